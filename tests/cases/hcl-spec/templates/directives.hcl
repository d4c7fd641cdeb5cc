# Template directives (spec: Template If/For Directive).
if_else   = "%{ if 1 > 2 }big%{ else }small%{ endif }"
if_only   = "[%{ if false }never%{ endif }]"
for_kv    = "%{ for k, v in { b = 2, a = 1 } }${k}${v};%{ endfor }"
for_index = "%{ for i, v in ["x", "y"] }${i}:${v} %{ endfor }"
