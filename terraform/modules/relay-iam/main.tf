# The relay's workload role: trusted by its ServiceAccount only (IRSA or EKS Pod Identity), allowed
# exactly the calls the relay makes on exactly the resources it is configured with. No `*` in an
# action or a resource (tests/deploy.rs parses this file and checks it).

locals {
  # TransactWriteItems and BatchWriteItem carry Put/Delete requests: the item actions below
  # authorise those, these two only the batch calls themselves.
  batch_actions = concat(
    contains(var.write_modes, "transact") ? ["dynamodb:TransactWriteItems"] : [],
    contains(var.write_modes, "batch") ? ["dynamodb:BatchWriteItem"] : [],
  )
}

data "aws_iam_policy_document" "trust" {
  dynamic "statement" {
    for_each = var.pod_identity ? [] : [1]
    content {
      sid     = "Irsa"
      actions = ["sts:AssumeRoleWithWebIdentity"]
      principals {
        type        = "Federated"
        identifiers = [var.oidc_provider_arn]
      }
      condition {
        test     = "StringEquals"
        variable = "${var.oidc_issuer}:sub"
        values   = ["system:serviceaccount:${var.namespace}:${var.service_account}"]
      }
      condition {
        test     = "StringEquals"
        variable = "${var.oidc_issuer}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }
  dynamic "statement" {
    for_each = var.pod_identity ? [1] : []
    content {
      sid     = "PodIdentity"
      actions = ["sts:AssumeRole", "sts:TagSession"]
      principals {
        type        = "Service"
        identifiers = ["pods.eks.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role" "relay" {
  name                 = var.name
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "relay" {
  # State tables: one guarded PutItem (upsert or tombstone) or DeleteItem (delete = "hard") per
  # change. The relay never calls UpdateItem or ConditionCheckItem on them, so neither is granted.
  statement {
    sid       = "StateTables"
    actions   = concat(["dynamodb:PutItem", "dynamodb:DeleteItem"], local.batch_actions)
    resources = var.state_table_arns
  }

  # The failover control record: read, created once, then switched by conditional updates.
  statement {
    sid       = "ControlTable"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    resources = [var.control_table_arn]
  }

  dynamic "statement" {
    for_each = length(var.event_bus_arns) > 0 ? [1] : []
    content {
      sid       = "Events"
      actions   = ["events:PutEvents"]
      resources = var.event_bus_arns
    }
  }

  # The DLQ: the relay sends (SendMessageBatch is authorised by SendMessage) and looks the URL up;
  # `cdc-relay dlq inspect|replay`, run in the pod, receives and deletes.
  statement {
    sid = "DeadLetterQueue"
    actions = [
      "sqs:GetQueueUrl",
      "sqs:SendMessage",
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
    ]
    resources = [var.dlq_queue_arn]
  }

  dynamic "statement" {
    for_each = length(var.kms_key_arns) > 0 ? [1] : []
    content {
      sid       = "DataKeys"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
      resources = var.kms_key_arns
    }
  }
}

resource "aws_iam_role_policy" "relay" {
  name   = "${var.name}-relay"
  role   = aws_iam_role.relay.id
  policy = data.aws_iam_policy_document.relay.json
}
