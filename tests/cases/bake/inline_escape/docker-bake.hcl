target "default" {
  dockerfile-inline = "FROM alpine\nRUN echo $${HOME} %%{x}"
  args = { SHELL_VAR = "$${PATH}" }
}
