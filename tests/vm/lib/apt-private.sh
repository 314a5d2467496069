# shellcheck shell=bash
# Sourced by the VM kit's scripts: a private apt configuration for one Debian suite
# under the cache dir (its own sources list, lists and archives), so that packages of
# any suite can be downloaded without touching the system's sources or state.
# Same layout as build-kernel's fetch_private (which keeps its own copy: its text keys
# the test-kernel cache, so it is not edited to source this). Callers may run at once
# (scripts/test fetches and builds in parallel): each suite's directory is held by one
# of them at a time, from init to release (or exit).
#
#   apt_private_init CACHE SUITE   sets apt_dir and the apt_opts array, takes the suite's
#                                  lock, runs apt-get update
#   apt_private_version PKG        the candidate version of PKG in the suite ("" if none)
#   apt_private_download PKG=VER   downloads the .deb into $apt_dir/archives, prints its path
#   apt_private_release            lets the next caller in

apt_private_init() {
  local cache=$1 suite=$2
  apt_dir=$cache/apt-$suite
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/etc"
  exec {apt_lock_fd}>"$apt_dir.lock"
  flock "$apt_lock_fd"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" >"$apt_dir/etc/sources.list"
  apt_opts=(-q -o "Dir::Etc::SourceList=$apt_dir/etc/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache::Archives=$apt_dir/archives" -o Dir::State::status=/dev/null
    -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
  apt-get "${apt_opts[@]}" update >&2 || { echo "apt-private: apt-get update for $suite failed" >&2; return 1; }
}

apt_private_version() {
  apt-cache "${apt_opts[@]}" show "$1" 2>/dev/null | sed -n 's/^Version: //p' | head -n1
}

# apt_private_depends PKG: the first package named in PKG's Depends (for metapackages)
apt_private_depends() {
  apt-cache "${apt_opts[@]}" show "$1" 2>/dev/null | sed -n 's/^Depends: //p' | head -n1 |
    tr ',' '\n' | sed 's/^ *//; s/[ (|].*//' | head -n1
}

apt_private_download() {
  local name=${1%%=*} ver=${1#*=}
  (cd "$apt_dir/archives" && apt-get "${apt_opts[@]}" download "$1" >&2) || { echo "apt-private: downloading $1 failed" >&2; return 1; }
  # apt-get download writes NAME_VER_ARCH.deb with the epoch's ':' escaped as %3a
  ls "$apt_dir/archives/${name}_${ver//:/%3a}_"*.deb | tail -n1
}

apt_private_release() {
  [ -n "${apt_lock_fd:-}" ] && exec {apt_lock_fd}>&-
  apt_lock_fd=
}
