variable "GO_VERSION" {
  default = null
}
variable "DOCS_FORMATS" {
  default = "md"
}
variable "DESTDIR" {
  default = "./bin"
}
variable "TEST_COVERAGE" {
  default = null
}
variable "GOLANGCI_LINT_MULTIPLATFORM" {
  default = ""
}

# Special target: a CI action fills in tags and labels
target "meta-helper" {
  tags = ["example/tool-bin:local"]
}

target "_common" {
  args = {
    GO_VERSION = GO_VERSION
    BUILDKIT_CONTEXT_KEEP_GIT_DIR = 1
  }
}

group "default" {
  targets = ["binaries"]
}

group "validate" {
  targets = ["lint", "validate-docs"]
}

target "lint" {
  inherits   = ["_common"]
  dockerfile = "./hack/dockerfiles/lint.Dockerfile"
  output     = ["type=cacheonly"]
  platforms = GOLANGCI_LINT_MULTIPLATFORM != "" ? [
    "darwin/amd64",
    "linux/amd64",
    "linux/arm64",
    "windows/amd64",
  ] : []
}

target "validate-docs" {
  inherits = ["_common"]
  args = {
    FORMATS = DOCS_FORMATS
    BUILDX_EXPERIMENTAL = 1 // enables the experimental commands for the docs
  }
  dockerfile = "./hack/dockerfiles/docs.Dockerfile"
  target     = "validate"
  output     = ["type=cacheonly"]
}

target "update-docs" {
  inherits = ["_common"]
  args = {
    FORMATS = DOCS_FORMATS
    BUILDX_EXPERIMENTAL = 1
  }
  dockerfile = "./hack/dockerfiles/docs.Dockerfile"
  target     = "update"
  output     = ["./docs/reference"]
}

target "test" {
  inherits = ["_common"]
  target   = "test-coverage"
  output   = ["${DESTDIR}/coverage"]
}

target "binaries" {
  inherits = ["_common"]
  target   = "binaries"
  output   = ["${DESTDIR}/build"]
  platforms = ["local"]
}

target "binaries-cross" {
  inherits  = ["binaries"]
  platforms = [
    "darwin/amd64",
    "linux/amd64",
    "linux/arm64",
    "windows/amd64",
  ]
}

target "release" {
  inherits = ["binaries-cross"]
  target   = "release"
  output   = ["${DESTDIR}/release"]
}

target "image" {
  inherits = ["meta-helper", "binaries"]
  output   = ["type=image"]
  platforms = ["linux/amd64"]
}

target "image-local" {
  inherits = ["image"]
  output   = ["type=docker"]
}

variable "HTTP_PROXY" {
  default = ""
}
variable "HTTPS_PROXY" {
  default = ""
}
variable "NO_PROXY" {
  default = ""
}
variable "TEST_BUILDKIT_TAG" {
  default = null
}

target "integration-test-base" {
  inherits = ["_common"]
  args = {
    GO_EXTRA_FLAGS    = TEST_COVERAGE == "1" ? "-cover" : null
    HTTP_PROXY        = HTTP_PROXY
    HTTPS_PROXY       = HTTPS_PROXY
    NO_PROXY          = NO_PROXY
    BUILDKIT_VERSION  = TEST_BUILDKIT_TAG
  }
  target = "integration-test-base"
  output = ["type=cacheonly"]
}

target "integration-test" {
  inherits = ["integration-test-base"]
  target   = "integration-test"
}
