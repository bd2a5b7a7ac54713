variable "description" {
  type = string
}
