# A customer-managed KMS key with rotation, administered by the account (AWS's default key
# policy): the tables, bus and DLQ of one region encrypt with it.

data "aws_caller_identity" "current" {}

data "aws_iam_policy_document" "key" {
  # A key policy's Resource is always "*" (it means this key); the account administers the key
  # and delegates use to IAM policies, such as relay-iam's DataKeys statement.
  #checkov:skip=CKV_AWS_109:AWS's default key policy: the account root administers its own key
  #checkov:skip=CKV_AWS_111:AWS's default key policy: the account root administers its own key
  #checkov:skip=CKV_AWS_356:in a key policy, Resource "*" is the key itself
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "this" {
  description         = var.description
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.key.json
}
