# expect: {dir}/bad_port.hcl:4:3: app "web": attribute "expose": "70000/tcp" is not a port (expected 1-65535, optionally with /tcp, /udp or /sctp)
app "web" {
  from   = "debian:bookworm"
  expose = [8080, "70000/tcp"]
}
