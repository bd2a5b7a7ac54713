# The dead-letter queue: records that can never succeed, with their reason, kept 14 days; an
# alarm fires as soon as one waits (the CdcRelayDlqGrowing alert is the Prometheus side).

resource "aws_sqs_queue" "dlq" {
  name                              = var.name
  message_retention_seconds         = var.retention_seconds
  max_message_size                  = 262144
  visibility_timeout_seconds        = 60
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = 300
}

resource "aws_cloudwatch_metric_alarm" "depth" {
  alarm_name          = "${var.name}-depth"
  alarm_description   = "Dead letters are waiting in ${var.name} (README: Runbook, CdcRelayDlqGrowing)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
}
