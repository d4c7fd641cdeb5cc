
app "web" {
  from = "debian:bookworm"
}
