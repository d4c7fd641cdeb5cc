# Heredocs (spec: Template Expressions): "<<-" removes the smallest indentation of
# the lines, counting Unicode spaces; the closing marker may be indented.
plain = <<EOT
one
  two
EOT
flush = <<-EOT
    one
      two
    EOT
interp = <<-EOT
  Hello ${upper("you")}!
  EOT
quotes = <<EOT
"quoted" and \n stays
EOT
empty = <<EOT
EOT
