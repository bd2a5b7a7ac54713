variable "eks_cluster_name" {
  description = "The EKS cluster in us-east-1."
  type        = string
}

variable "write_region" {
  description = "dynamodb.write_region of the relay's config: where every pod writes the global tables."
  type        = string
  default     = "us-west-2"
}

variable "state_tables" {
  type    = list(string)
  default = ["cdc-customers", "cdc-orders"]
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
  description = "Optional: forward events to the us-west-2 bus."
  type        = string
  default     = null
}

variable "alarm_actions" {
  type    = list(string)
  default = []
}
