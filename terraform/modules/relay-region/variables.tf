variable "region" {
  description = "This region (names the DLQ and the role)."
  type        = string
}

variable "eks_cluster_name" {
  description = "The EKS cluster in this region."
  type        = string
}

variable "kms_key_arn" {
  description = "This region's key for the bus and the DLQ."
  type        = string
}

variable "state_table_arns" {
  description = "The state tables in the write region."
  type        = list(string)
}

variable "control_table_arn" {
  description = "The control table in the write region."
  type        = string
}

variable "table_kms_key_arns" {
  description = "The keys of the tables in the write region."
  type        = list(string)
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
  description = "Optional: forward events to the other region's bus."
  type        = string
  default     = null
}

variable "alarm_actions" {
  type    = list(string)
  default = []
}
