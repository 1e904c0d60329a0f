"""Where a workstation keeps what the file tools must not touch, and how a file is recognised as one of
them whatever path reaches it.

Two lists, relative to the home folder unless absolute:

* `SECRETS`: credentials that would let a caller become the user elsewhere (SSH and GnuPG keys, cloud,
  cluster and registry logins, browser profiles with their saved passwords and session cookies,
  password-manager vaults, keychains). The file tools neither read, list nor write them. `SECRET_NAMES`
  adds file names refused wherever they are (a KeePass vault, a keychain, a GnuPG secret ring).
* `PERSISTENCE`: places from which programs start by themselves (shell start-up files, SSH's
  authorized_keys, crontabs, LaunchAgents, systemd user units, XDG autostart). The file tools read them
  but refuse to write there unless the owner sets ALLOW_PERSISTENCE_WRITES=1: a prompt-injected write
  there outlives the session.

Paths alone are not enough: a hard link made anywhere in the home folder to `~/.ssh/id_ed25519` is the
same file under an innocent name, and on a case-insensitive file system `~/.SSH` is `~/.ssh`.
`Locations` therefore also knows the identities (device, inode) of the listed files and folders, and
of the files inside the listed folders, for agent/policy.py to compare with what it actually opened.
"""

from __future__ import annotations

import fnmatch
import os
import stat
import threading
import time

_BROWSERS = (
    # Chrome, Chromium, Edge, Brave, Vivaldi, Opera: Login Data, Cookies, Web Data, Local Storage tokens.
    ".config/google-chrome", ".config/google-chrome-beta", ".config/google-chrome-unstable", ".config/chromium",
    ".config/microsoft-edge", ".config/microsoft-edge-beta", ".config/microsoft-edge-dev", ".config/BraveSoftware",
    ".config/vivaldi", ".config/opera", "snap/chromium", ".var/app/com.google.Chrome", ".var/app/org.chromium.Chromium",
    ".var/app/com.microsoft.Edge", ".var/app/com.brave.Browser",
    "Library/Application Support/Google/Chrome", "Library/Application Support/Chromium",
    "Library/Application Support/Microsoft Edge", "Library/Application Support/BraveSoftware",
    "Library/Application Support/Vivaldi", "Library/Cookies", "Library/Safari",
    # Firefox and Thunderbird: logins.json, key4.db, cookies.sqlite.
    ".mozilla", ".librewolf", ".thunderbird", "snap/firefox", ".var/app/org.mozilla.firefox",
    "Library/Application Support/Firefox", "Library/Thunderbird",
)
_VAULTS = (
    ".password-store", ".config/1Password", ".1password", "Library/Group Containers/2BUA8C4S2C.com.1password",
    "Library/Application Support/1Password", ".config/Bitwarden", ".config/Bitwarden CLI",
    "Library/Application Support/Bitwarden", ".config/keepassxc", ".local/share/keyrings", ".local/share/kwalletd",
    "Library/Keychains",
)
_LOGINS = (
    ".ssh", ".gnupg", ".aws", ".config/gcloud", ".azure", ".kube", ".docker/config.json",
    ".config/containers/auth.json", ".netrc", "_netrc", ".pgpass", ".git-credentials", ".config/git/credentials",
    ".config/gh", ".config/hub", ".npmrc", ".yarnrc.yml", ".pypirc", ".cargo/credentials", ".cargo/credentials.toml",
    ".gem/credentials", ".terraform.d/credentials.tfrc.json", ".vault-token", ".boto", ".s3cfg", ".oci",
    ".config/doctl", ".config/rclone/rclone.conf", ".config/code-remote",
)
SECRETS = _LOGINS + _BROWSERS + _VAULTS
SECRET_NAMES = ("*.kdbx", "*.kdb", "*.keychain", "*.keychain-db", "secring.gpg", "secring.kbx")

PERSISTENCE = (
    ".bashrc", ".bash_profile", ".bash_login", ".bash_logout", ".profile", ".zshrc", ".zshenv", ".zprofile",
    ".zlogin", ".zlogout", ".kshrc", ".cshrc", ".tcshrc", ".login", ".config/fish", ".xprofile", ".xinitrc",
    ".xsession", ".xsessionrc", ".pam_environment", ".config/environment.d", ".ssh/authorized_keys",
    ".ssh/authorized_keys2", ".ssh/rc", "Library/LaunchAgents", ".config/systemd/user", ".local/share/systemd/user",
    ".config/autostart", ".config/autostart-scripts", ".config/plasma-workspace/env",
    "/var/spool/cron", "/var/spool/cron/crontabs", "/usr/lib/cron/tabs", "/var/at/tabs", "/etc/crontab", "/etc/cron.d",
)
# A walk of the listed folders for the files inside them is reused this long (a hard link to a file
# that existed before the walk is caught whatever its age; only a file created since may be missed).
WALK_CACHE_SECONDS = 2.0
MAX_WALK_ENTRIES = 200_000

Identity = tuple[int, int]


def identity(info: os.stat_result) -> Identity:
    return (info.st_dev, info.st_ino)


class Locations:
    """A list of absolute paths (files or folders) and the identities of what they hold."""

    def __init__(self, paths: tuple[str, ...], names: tuple[str, ...] = ()) -> None:
        self.paths = tuple(dict.fromkeys(os.path.realpath(p) for p in paths if p))
        self.names = names
        self._lock = threading.Lock()
        self._walked_at = -WALK_CACHE_SECONDS
        self._inside: dict[Identity, str] = {}

    def containing(self, real: str) -> str | None:
        """The listed path that `real` is, or lies under, or whose name it has; else None."""
        for path in self.paths:
            if real == path or real.startswith(path.rstrip("/") + "/"):
                return path
        name = os.path.basename(real)
        return next((pattern for pattern in self.names if fnmatch.fnmatch(name, pattern)), None)

    def listed(self) -> dict[Identity, str]:
        """Identities of the listed paths themselves (a few stat calls, made fresh each time)."""
        found = {}
        for path in self.paths:
            try:
                found[identity(os.stat(path))] = path
            except OSError:
                continue
        return found

    def inside(self) -> dict[Identity, str]:
        """Identities of the files inside the listed folders (walked, without following symlinks)."""
        with self._lock:
            if time.monotonic() - self._walked_at < WALK_CACHE_SECONDS:
                return self._inside
            found: dict[Identity, str] = {}
            budget = MAX_WALK_ENTRIES
            for top in self.paths:
                budget = _walk(top, found, budget)
            self._inside, self._walked_at = found, time.monotonic()
            return found

    def match(self, info: os.stat_result, listed: dict[Identity, str] | None = None) -> str | None:
        """The listed path an opened file or folder is (by identity), or None.

        A file with a single link can only be reached by its one path, which the path check judged;
        a file with several (hard links) is compared with every file inside the listed folders."""
        key = identity(info)
        hit = (self.listed() if listed is None else listed).get(key)
        if hit is None and stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
            hit = self.inside().get(key)
        return hit


def _walk(top: str, found: dict[Identity, str], budget: int) -> int:
    stack = [top]
    while stack and budget > 0:
        folder = stack.pop()
        try:
            device = os.stat(folder, follow_symlinks=False).st_dev
            with os.scandir(folder) as entries:
                for entry in entries:
                    budget -= 1
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        found[(device, entry.inode())] = entry.path
        except OSError:
            continue
    return budget
