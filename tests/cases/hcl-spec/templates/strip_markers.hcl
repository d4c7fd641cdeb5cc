# Strip markers (spec: Template Literals): "~" removes the spaces of the adjacent
# literal, at syntax level only.
left_right   = "hello ${~ "world" } !"
both         = "a   ${~ "b" ~}   c"
directive    = "%{ if true ~}  hello  %{~ endif }"
values_kept  = "${"hello " ~}${" world"}"
for_strip    = "[%{ for x in ["a", "b"] ~} ${x} %{~ endfor }]"
newlines     = "x ${~ "y" ~}\n  z"
