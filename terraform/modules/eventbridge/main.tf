# The bus the relay publishes domain events to, and optionally a rule that forwards them to the
# other region's bus (consumers there see every change, whichever region the relay runs in).

resource "aws_cloudwatch_event_bus" "relay" {
  name               = var.bus_name
  kms_key_identifier = var.kms_key_arn
}

resource "aws_cloudwatch_event_rule" "forward" {
  count          = var.forward_to_bus_arn == null ? 0 : 1
  name           = "${var.bus_name}-forward"
  description    = "cdc-relay events to the other region's bus"
  event_bus_name = aws_cloudwatch_event_bus.relay.name
  event_pattern  = jsonencode({ source = [var.source] })
}

data "aws_iam_policy_document" "forward_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "forward" {
  count              = var.forward_to_bus_arn == null ? 0 : 1
  name               = "${var.bus_name}-forward"
  assume_role_policy = data.aws_iam_policy_document.forward_trust.json
}

data "aws_iam_policy_document" "forward" {
  count = var.forward_to_bus_arn == null ? 0 : 1
  statement {
    actions   = ["events:PutEvents"]
    resources = [var.forward_to_bus_arn]
  }
}

resource "aws_iam_role_policy" "forward" {
  count  = var.forward_to_bus_arn == null ? 0 : 1
  name   = "${var.bus_name}-forward"
  role   = aws_iam_role.forward[0].id
  policy = data.aws_iam_policy_document.forward[0].json
}

resource "aws_cloudwatch_event_target" "forward" {
  count          = var.forward_to_bus_arn == null ? 0 : 1
  rule           = aws_cloudwatch_event_rule.forward[0].name
  event_bus_name = aws_cloudwatch_event_bus.relay.name
  arn            = var.forward_to_bus_arn
  role_arn       = aws_iam_role.forward[0].arn
}
