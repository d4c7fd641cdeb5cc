# Flask services. `web` is the user's own example (flask + flask-mysql); the others
# inherit its shape and change what differs. Three dependency sets -> three pip layers.

app "web" {
  from       = image.python
  pip        = local.flask_mysql
  source     = "services/web"
  workdir    = "/opt/source-code"
  entrypoint = "FLASK_APP=/opt/source-code/app.py flask run --host=0.0.0.0 --port=5000"
  expose     = [5000]
  env        = { SERVICE = "web" }
  labels     = { "org.opencontainers.image.vendor" = "acme" }
  tags       = ["${var.REGISTRY}/web:${var.VERSION}"]
}

app "orders" {
  inherits = [app.web]
  source   = "services/orders"
  env      = { SERVICE = "orders" }
  tags     = ["${var.REGISTRY}/orders:${var.VERSION}"]
}

app "users" {
  inherits = [app.web]
  # the same set as web, written in another order: still one shared pip layer
  pip    = ["flask-mysql==1.5.2", "flask==3.0.3"]
  source = "services/users"
  env    = { SERVICE = "users" }
  tags   = ["${var.REGISTRY}/users:${var.VERSION}"]
}

app "api" {
  inherits = [app.web]
  pip      = local.flask_api
  source   = "services/api"
  env      = { SERVICE = "api" }
  tags     = ["${var.REGISTRY}/api:${var.VERSION}"]
}

app "catalog" {
  inherits = [app.api]
  apt      = ["curl"]
  source   = "services/catalog"
  env      = { SERVICE = "catalog" }
  tags     = ["${var.REGISTRY}/catalog:${var.VERSION}"]
}

app "search" {
  inherits = [app.api]
  apt      = ["curl"]
  source   = "services/search"
  env      = { SERVICE = "search" }
  tags     = ["${var.REGISTRY}/search:${var.VERSION}"]
}

app "cart" {
  inherits = [app.web]
  pip      = local.flask_cache
  source   = "services/cart"
  env      = { SERVICE = "cart" }
  tags     = ["${var.REGISTRY}/cart:${var.VERSION}"]
}

app "sessions" {
  inherits = [app.cart]
  source   = "services/sessions"
  env      = { SERVICE = "sessions" }
  tags     = ["${var.REGISTRY}/sessions:${var.VERSION}"]
}

# One block, one app per region: health-eu, health-us.
app "health" {
  inherits = [app.api]
  matrix   = { region = ["eu", "us"] }
  name     = "health-${matrix.region}"
  source   = "services/health"
  env      = { SERVICE = "health", REGION = matrix.region }
  tags     = ["${var.REGISTRY}/health-${matrix.region}:${var.VERSION}"]
}

# An existing Dockerfile joins the same DAG: its first RUN equals image.python's,
# so that layer is shared with every service above.
app "legacy" {
  dockerfile = "services/legacy/Dockerfile"
  tags       = ["${var.REGISTRY}/legacy:${var.VERSION}"]
}

# `pipeline build storefront` builds just these.
group "storefront" {
  targets = [app.catalog, app.search, app.cart, app.sessions]
}
