# expect: {dir}/inherits_cycle.hcl:3:3: app "a": inherits cycle: app.a -> app.b -> app.a
app "a" {
  inherits = [app.b]
  from     = "debian:bookworm"
}

app "b" {
  inherits = [app.a]
}
