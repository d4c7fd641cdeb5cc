# expect: {dir}/unterminated_heredoc.hcl:5:15: syntax error: unterminated heredoc "<<EOT": no line holds only its closing marker
image "x" {
  from = "scratch"
  run {
    command = <<EOT
echo hi
  EOT2
  }
}
