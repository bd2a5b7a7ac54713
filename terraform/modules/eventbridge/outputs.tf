output "bus_arn" {
  value = aws_cloudwatch_event_bus.relay.arn
}
