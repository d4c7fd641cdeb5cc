variable "ALPINE_VERSION" {
  default = null
}
variable "GO_VERSION" {
  default = null
}
variable "BUILDKIT_DEBUG" {
  default = null
}
variable "GOLANGCI_LINT_MULTIPLATFORM" {
  default = null
}
variable "IMAGE_TARGET" {
  default = null
}
# where binaries go
variable "DESTDIR" {
  default = ""
}
variable "TEST_COVERAGE" {
  default = null
}
variable "TEST_IMAGE_NAME" {
  default = "kit-tests"
}
variable "TEST_CONTEXT" {
  default     = "."
  description = "Context of the test image"
}
variable "TEST_BINARIES_CONTEXT" {
  default     = TEST_CONTEXT
  description = "Context of the binaries for the test image"
}

function "bindir" {
  params = [defaultdir]
  result = DESTDIR != "" ? DESTDIR : "./bin/${defaultdir}"
}

target "meta-helper" {
  tags = [IMAGE_TARGET != null && IMAGE_TARGET != "" ? "example/kit:local-${IMAGE_TARGET}" : "example/kit:local"]
}

target "_common" {
  args = {
    ALPINE_VERSION = ALPINE_VERSION
    GO_VERSION     = GO_VERSION
    BUILDKIT_DEBUG = BUILDKIT_DEBUG
    BUILDKIT_CONTEXT_KEEP_GIT_DIR = 1
  }
}

group "default" {
  targets = ["binaries"]
}

target "binaries" {
  inherits = ["_common"]
  target   = "binaries"
  output   = [bindir("build")]
}

target "binaries-cross" {
  inherits  = ["binaries"]
  output    = [bindir("cross")]
  platforms = ["linux/amd64", "linux/arm/v7", "linux/arm64", "linux/s390x", "windows/amd64"]
}

target "release" {
  inherits = ["binaries-cross"]
  target   = "release"
  output   = [bindir("release")]
}

target "image" {
  inherits = ["_common", "meta-helper"]
  target   = IMAGE_TARGET
  cache-to = ["type=inline"]
  output   = ["type=docker"]
}

target "integration-tests-base" {
  inherits = ["_common"]
  target   = "integration-tests-base"
  output   = ["type=cacheonly"]
}

target "integration-tests-binaries" {
  inherits = ["_common"]
  target   = "binaries"
  context  = TEST_BINARIES_CONTEXT
}

target "integration-tests" {
  inherits = ["integration-tests-base"]
  target   = "integration-tests"
  context  = TEST_CONTEXT
  contexts = TEST_CONTEXT != TEST_BINARIES_CONTEXT ? {
    "binaries" = "target:integration-tests-binaries"
  } : null
  args = {
    GOFLAGS = TEST_COVERAGE == "1" ? "-cover" : null
  }
  output = ["type=docker,name=${TEST_IMAGE_NAME}"]
}

group "validate" {
  targets = ["lint", "validate-vendor", "validate-dockerfile"]
}

target "lint" {
  name       = "lint-${buildtags.name}"
  inherits   = ["_common"]
  dockerfile = "./hack/dockerfiles/lint.Dockerfile"
  output     = ["type=cacheonly"]
  target     = buildtags.target
  args = {
    TARGETNAME = buildtags.name
    BUILDTAGS  = buildtags.tags
  }
  platforms = buildtags.target == "golangci-lint" && GOLANGCI_LINT_MULTIPLATFORM != null ? [
    "linux/amd64",
    "linux/arm64",
  ] : []
  matrix = {
    buildtags = [
      { name = "default", tags = "", target = "golangci-lint" },
      { name = "labs", tags = "dfrunsecurity", target = "golangci-lint" },
      { name = "yaml", tags = "", target = "yamllint" },
    ]
  }
}

target "validate-vendor" {
  inherits   = ["_common"]
  dockerfile = "./hack/dockerfiles/vendor.Dockerfile"
  target     = "validate"
  output     = ["type=cacheonly"]
}

target "validate-dockerfile" {
  matrix = {
    dockerfile = [
      "Dockerfile",
      "./hack/dockerfiles/lint.Dockerfile",
      "./hack/dockerfiles/vendor.Dockerfile",
    ]
  }
  name       = "validate-dockerfile-${md5(dockerfile)}"
  inherits   = ["_common"]
  dockerfile = dockerfile
  call       = "check"
}

target "vendor" {
  inherits   = ["_common"]
  dockerfile = "./hack/dockerfiles/vendor.Dockerfile"
  target     = "update"
  output     = ["."]
}

target "mod-outdated" {
  inherits        = ["_common"]
  dockerfile      = "./hack/dockerfiles/vendor.Dockerfile"
  target          = "outdated"
  no-cache-filter = ["outdated"]
  output          = ["type=cacheonly"]
}
