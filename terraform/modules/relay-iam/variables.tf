variable "name" {
  description = "Name of the workload role, e.g. cdc-relay-us-west-2."
  type        = string
}

variable "namespace" {
  description = "Kubernetes namespace of the relay's ServiceAccount."
  type        = string
  default     = "cdc-relay"
}

variable "service_account" {
  description = "Name of the relay's ServiceAccount (k8s/base/serviceaccount.yaml)."
  type        = string
  default     = "cdc-relay"
}

variable "oidc_provider_arn" {
  description = "IRSA: ARN of the EKS cluster's IAM OIDC provider (modules/eks-app output). Null with pod_identity."
  type        = string
  default     = null
}

variable "oidc_issuer" {
  description = "IRSA: the cluster's OIDC issuer without https:// (modules/eks-app output)."
  type        = string
  default     = null
}

variable "pod_identity" {
  description = "Trust EKS Pod Identity (pods.eks.amazonaws.com) instead of IRSA."
  type        = bool
  default     = false
}

variable "state_table_arns" {
  description = "ARNs of the DynamoDB tables the routes write (the replica in the write region)."
  type        = list(string)
}

variable "control_table_arn" {
  description = "ARN of the failover control table (failover.control_table), in the write region."
  type        = string
}

variable "write_modes" {
  description = "Write modes the routes use: conditional, transact, batch. BatchWriteItem and TransactWriteItems are granted only for the modes listed."
  type        = list(string)
  default     = ["conditional"]
  validation {
    condition     = alltrue([for m in var.write_modes : contains(["conditional", "transact", "batch"], m)])
    error_message = "write_modes: each one of conditional, transact, batch."
  }
}

variable "event_bus_arns" {
  description = "EventBridge buses the relay publishes to ([eventbridge] bus)."
  type        = list(string)
  default     = []
}

variable "dlq_queue_arn" {
  description = "The SQS dead-letter queue ([dlq] sqs_queue_name)."
  type        = string
}

variable "kms_key_arns" {
  description = "Customer-managed KMS keys of the DLQ and tables the relay writes (data-key actions only)."
  type        = list(string)
  default     = []
}
