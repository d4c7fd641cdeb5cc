variable "PORT" {
  type = number
  default = 8080
  validation {
    condition = PORT > 1024
    error_message = "The port must be above 1024."
  }
}
target "default" {
  args = { PORT = PORT }
}
