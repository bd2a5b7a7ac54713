# State tables and the control table as DynamoDB global tables (version 2019.11.21) in this region
# with a replica in the other. The relay writes them in one region only, dynamodb.write_region
# (README "Global tables and the version guard"): a condition is evaluated only in the region that
# receives the write, and replication resolves concurrent writes last-writer-wins.

resource "aws_dynamodb_table" "state" {
  for_each = toset(var.state_tables)

  name                        = each.value
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = var.pk_attribute
  deletion_protection_enabled = true
  # Global tables replicate through the table's stream.
  stream_enabled   = true
  stream_view_type = "NEW_AND_OLD_IMAGES"

  attribute {
    name = var.pk_attribute
    type = "S"
  }

  # Tombstones (delete = "tombstone" with tombstone_ttl) expire on their own.
  ttl {
    attribute_name = var.tombstone_ttl_attribute
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }

  replica {
    region_name            = var.replica_region
    kms_key_arn            = var.replica_kms_key_arn
    point_in_time_recovery = true
    propagate_tags         = true
  }
}

resource "aws_dynamodb_table" "control" {
  name                        = var.control_table
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "group"
  deletion_protection_enabled = true
  stream_enabled              = true
  stream_view_type            = "NEW_AND_OLD_IMAGES"

  attribute {
    name = "group"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }

  replica {
    region_name            = var.replica_region
    kms_key_arn            = var.replica_kms_key_arn
    point_in_time_recovery = true
    propagate_tags         = true
  }
}
