# State tables and the control table as DynamoDB global tables (version 2019.11.21) in this region
# with a replica in the other. The relay writes them in one region only, dynamodb.write_region
# (README "Global tables and the version guard"): a condition is evaluated only in the region that
# receives the write, and replication resolves concurrent writes last-writer-wins.

locals {
  # Every table: its hash key and whether tombstones expire in it (the state tables).
  tables = merge(
    { for t in var.state_tables : t => { hash_key = var.pk_attribute, ttl = true } },
    { (var.control_table) = { hash_key = "group", ttl = false } },
  )
}

resource "aws_dynamodb_table" "this" {
  for_each = local.tables

  name                        = each.key
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = each.value.hash_key
  deletion_protection_enabled = true
  # Global tables replicate through the table's stream.
  stream_enabled   = true
  stream_view_type = "NEW_AND_OLD_IMAGES"

  attribute {
    name = each.value.hash_key
    type = "S"
  }

  # Tombstones (delete = "tombstone" with tombstone_ttl) expire on their own.
  dynamic "ttl" {
    for_each = each.value.ttl ? [1] : []
    content {
      attribute_name = var.tombstone_ttl_attribute
      enabled        = true
    }
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
