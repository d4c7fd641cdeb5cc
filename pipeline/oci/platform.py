"""This machine's platform in OCI terms: the one architecture map. Pure apart from
asking the interpreter for the machine name."""

from __future__ import annotations

import platform

# uname -m -> (GOARCH, variant), as OCI and Docker name them
_ARCHES = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "arm64": ("arm64", ""),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
}


def arch_of(machine: str) -> tuple[str, str]:
    """(architecture, variant) for a ``uname -m`` name; unknown names pass through."""
    return _ARCHES.get(machine.lower(), (machine.lower(), ""))


def host_platform() -> tuple[str, str, str]:
    """(os, architecture, variant) of this machine, e.g. ("linux", "amd64", "")."""
    arch, variant = arch_of(platform.machine())
    return ("linux", arch, variant)


def host_arch() -> str:
    """This machine's OCI architecture name ("amd64", "arm64", ...)."""
    return host_platform()[1]


def platform_string() -> str:
    """``os/arch[/variant]`` of this machine, e.g. ``linux/arm/v7``."""
    os_, arch, variant = host_platform()
    return f"{os_}/{arch}" + (f"/{variant}" if variant else "")


def platform_args() -> dict[str, str]:
    """The ARGs BuildKit defines in the global scope (TARGET*/BUILD*); this builder
    only builds for the machine it runs on, so both sets describe this machine."""
    os_, arch, variant = host_platform()
    plat = f"{os_}/{arch}" + (f"/{variant}" if variant else "")
    out: dict[str, str] = {}
    for prefix in ("TARGET", "BUILD"):
        out |= {
            f"{prefix}PLATFORM": plat,
            f"{prefix}OS": os_,
            f"{prefix}ARCH": arch,
            f"{prefix}VARIANT": variant,
        }
    return out
