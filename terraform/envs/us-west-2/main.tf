# us-west-2: the primary region. Apply this first (README "Deploy to EKS"): it owns the global
# tables (home here, replicas in us-east-1) and the KMS keys of both regions' table replicas.

provider "aws" {
  region = "us-west-2"
}

provider "aws" {
  alias  = "peer"
  region = "us-east-1"
}

module "key" {
  source      = "../../modules/kms-key"
  description = "cdc-relay: tables, bus and DLQ in us-west-2"
}

module "replica_key" {
  source      = "../../modules/kms-key"
  providers   = { aws = aws.peer }
  description = "cdc-relay: table replicas in us-east-1"
}

module "tables" {
  source              = "../../modules/dynamodb"
  state_tables        = var.state_tables
  control_table       = var.control_table
  replica_region      = "us-east-1"
  kms_key_arn         = module.key.arn
  replica_kms_key_arn = module.replica_key.arn
}

# dynamodb.write_region = "us-west-2" (k8s/base/config.toml): the relay writes the tables here,
# from both regions.
module "relay" {
  source                    = "../../modules/relay-region"
  region                    = "us-west-2"
  eks_cluster_name          = var.eks_cluster_name
  kms_key_arn               = module.key.arn
  state_table_arns          = module.tables.state_table_arns
  control_table_arn         = module.tables.control_table_arn
  table_kms_key_arns        = [module.key.arn]
  write_modes               = var.write_modes
  bus_name                  = var.bus_name
  forward_events_to_bus_arn = var.forward_events_to_bus_arn
  alarm_actions             = var.alarm_actions
}
