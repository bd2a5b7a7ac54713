variable "name" {
  description = "The DLQ's name ([dlq] sqs_queue_name)."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for messages at rest."
  type        = string
}

variable "retention_seconds" {
  description = "How long dead letters are kept (SQS maximum: 14 days)."
  type        = number
  default     = 1209600
}

variable "alarm_actions" {
  description = "SNS topics (or other actions) notified when dead letters wait."
  type        = list(string)
  default     = []
}
