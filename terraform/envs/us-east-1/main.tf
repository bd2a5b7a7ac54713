# us-east-1: the secondary region. Apply after envs/us-west-2, which created the global tables and
# their replicas here. The relay pods of this region write to the tables' write region
# (dynamodb.write_region = "us-west-2"), so their role names those ARNs.

provider "aws" {
  region = "us-east-1"
}

provider "aws" {
  alias  = "write"
  region = var.write_region
}

data "aws_dynamodb_table" "state" {
  provider = aws.write
  for_each = toset(var.state_tables)
  name     = each.value
}

data "aws_dynamodb_table" "control" {
  provider = aws.write
  name     = var.control_table
}

module "key" {
  source      = "../../modules/kms-key"
  description = "cdc-relay: bus and DLQ in us-east-1"
}

module "relay" {
  source                    = "../../modules/relay-region"
  region                    = "us-east-1"
  eks_cluster_name          = var.eks_cluster_name
  kms_key_arn               = module.key.arn
  state_table_arns          = [for t in data.aws_dynamodb_table.state : t.arn]
  control_table_arn         = data.aws_dynamodb_table.control.arn
  table_kms_key_arns        = distinct([for t in data.aws_dynamodb_table.state : t.server_side_encryption[0].kms_key_arn])
  write_modes               = var.write_modes
  bus_name                  = var.bus_name
  forward_events_to_bus_arn = var.forward_events_to_bus_arn
  alarm_actions             = var.alarm_actions
}
