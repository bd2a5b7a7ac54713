# What each region runs for the relay, the same in both: the event bus, the region's DLQ, the EKS
# identity wiring and the workload role. The role is given the tables of the write region
# (dynamodb.write_region): every pod of the group writes there, from either region.

module "bus" {
  source             = "../eventbridge"
  bus_name           = var.bus_name
  kms_key_arn        = var.kms_key_arn
  forward_to_bus_arn = var.forward_events_to_bus_arn
}

module "dlq" {
  source        = "../sqs-dlq"
  name          = "cdc-relay-dlq-${var.region}"
  kms_key_arn   = var.kms_key_arn
  alarm_actions = var.alarm_actions
}

module "eks" {
  source       = "../eks-app"
  cluster_name = var.eks_cluster_name
}

module "relay_iam" {
  source            = "../relay-iam"
  name              = "cdc-relay-${var.region}"
  oidc_provider_arn = module.eks.oidc_provider_arn
  oidc_issuer       = module.eks.oidc_issuer
  state_table_arns  = var.state_table_arns
  control_table_arn = var.control_table_arn
  write_modes       = var.write_modes
  event_bus_arns    = [module.bus.bus_arn]
  dlq_queue_arn     = module.dlq.queue_arn
  kms_key_arns      = distinct(concat([var.kms_key_arn], var.table_kms_key_arns))
}
