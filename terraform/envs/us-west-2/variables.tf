variable "eks_cluster_name" {
  description = "The EKS cluster in us-west-2."
  type        = string
}

variable "state_tables" {
  description = "The routes' tables (k8s/base/config.toml [[routes]] table)."
  type        = list(string)
  default     = ["cdc-customers", "cdc-orders"]
}

variable "control_table" {
  type    = string
  default = "cdc-relay-control"
}

variable "write_modes" {
  type    = list(string)
  default = ["conditional"]
}

variable "bus_name" {
  type    = string
  default = "cdc-events"
}

variable "forward_events_to_bus_arn" {
  description = "Optional: forward events to the us-east-1 bus."
  type        = string
  default     = null
}

variable "alarm_actions" {
  type    = list(string)
  default = []
}
