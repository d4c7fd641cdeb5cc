# The example fleet: the user's Flask services, built the Docker way but fleet-wide.
#
#   debian base -> apt (python3, pip) -> pip dependency set -> source -> metadata
#
# Apps that ask for the same packages (in any order) share those layers, so the
# fleet installs each dependency set once, and a source change rebuilds one layer.

variable "DEBIAN" {
  default     = "bookworm"
  description = "Debian suite of the shared base (pipeline bootstrap debian:SUITE)"
}

variable "VERSION" {
  default = "1.0"
}

variable "REGISTRY" {
  default = "acme"
}

locals {
  flask_mysql = ["flask==3.0.3", "flask-mysql==1.5.2"]
  flask_api   = ["flask==3.0.3", "requests==2.32.3"]
  flask_cache = ["flask==3.0.3", "redis==5.0.8"]
}

# The shared Python base: the notes' first three steps, built once for the fleet.
image "python" {
  from = "debian:${var.DEBIAN}"
  run {
    command = "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-pip && rm -rf /var/lib/apt/lists/*"
  }
  env {
    PYTHONDONTWRITEBYTECODE = "1"
    PYTHONUNBUFFERED        = "1"
  }
}

