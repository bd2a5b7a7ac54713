variable "bus_name" {
  description = "The relay's event bus ([eventbridge] bus)."
  type        = string
  default     = "cdc-events"
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for events at rest on the bus."
  type        = string
}

variable "forward_to_bus_arn" {
  description = "Optional: the other region's bus; a rule forwards the relay's events there (cross-region consumers)."
  type        = string
  default     = null
}

variable "source" {
  description = "The relay's event source ([eventbridge] source)."
  type        = string
  default     = "cdc-relay"
}
