variable "state_tables" {
  description = "State tables the routes write ([[routes]] table), each keyed by a string `pk` (pk_attribute)."
  type        = list(string)
}

variable "control_table" {
  description = "The failover control table (failover.control_table), keyed by a string `group`."
  type        = string
  default     = "cdc-relay-control"
}

variable "replica_region" {
  description = "The other region: every table is a global table replicated there."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key of the tables in this region."
  type        = string
}

variable "replica_kms_key_arn" {
  description = "Customer-managed KMS key of the replicas in replica_region."
  type        = string
}

variable "tombstone_ttl_attribute" {
  description = "Attribute holding a tombstone's expiry (routes' tombstone_ttl_attribute)."
  type        = string
  default     = "_ttl"
}

variable "pk_attribute" {
  description = "Partition key attribute of the state tables (routes' pk_attribute)."
  type        = string
  default     = "pk"
}
