target "default" {
  output     = ["type=registry", { type = "oci", dest = "out.tar" }]
  cache-from = ["user/app:cache", { type = "registry", ref = "user/repo:cache" }]
  cache-to   = ["type=inline"]
  secret     = [{ type = "env", id = "KUBECONFIG" }, "id=aws,src=/home/u/.aws/credentials"]
  ssh        = ["default", "key=/a,/b"]
  attest     = ["type=sbom", { type = "provenance", mode = "max" }]
  no-cache   = "true"
}
