#!/usr/bin/env bash
# Re-creates tests/corpus/realmta: real bounces from real MTAs, labelled by what the refusal means.
#
#   sudo tools/realmta/generate.sh [WORK_DIR] [MTA...]   (MTAs: postfix exim sendmail opensmtpd courier)
#
# Needs root, debootstrap and Debian's mirror; not part of CI (takes about 15 minutes). Each MTA
# is installed from Debian's packages in its own debootstrap chroot under WORK_DIR (default
# /var/tmp/realmta), so that packages that conflict never meet. The chroots share the host's
# loopback: receiver.py answers as the providers' MXs on 127.0.1.N, as DNS on 127.0.0.53
# (each chroot's resolver), and keeps every bounce the MTAs return to capture.test. No MTA
# listens on a port; mail is handed to each by its own sendmail command.
#
# Then label.py writes emails/ and labels.jsonl from what arrived and what scenarios.toml says
# each refusal means.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=${1:-/var/tmp/realmta}
shift || true
mtas=${*:-postfix exim sendmail opensmtpd courier}
out=$work/captured
rm -rf "$out"
mkdir -p "$work" "$out"

log() { echo "[$(date +%T)] $*" >&2; }

# --- chroots --------------------------------------------------------------------------------
chroot_for() { # NAME PACKAGES...   (made once, then only the packages it lacks are added)
  local name=$1; shift
  local dir=$work/$name
  if [ ! -e "$work/base/.ready" ]; then
    log "debootstrap bookworm (minbase)"
    rm -rf "$work/base"
    debootstrap --variant=minbase bookworm "$work/base" http://deb.debian.org/debian >"$work/base.log"
    touch "$work/base/.ready"
  fi
  if [ ! -e "$dir/.made" ]; then
    rm -rf "$dir"
    cp -a "$work/base" "$dir"
    rm -f "$dir/.ready"
    printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
    chmod +x "$dir/usr/sbin/policy-rc.d"
    echo "postfix postfix/main_mailer_type select No configuration" | chroot "$dir" debconf-set-selections
    touch "$dir/.made"
  fi
  log "chroot $name: $*"
  cp /etc/resolv.conf "$dir/etc/resolv.conf"
  mount -t proc proc "$dir/proc"
  chroot "$dir" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >"$work/$name-install.log" ||
    { umount "$dir/proc"; log "apt-get failed in $name: see $work/$name-install.log"; return 1; }
  umount "$dir/proc"
}

kill_chroot() { # every process left running inside the chroot
  local dir pid
  dir=$(readlink -f "$work/$1")
  for pid in /proc/[0-9]*; do
    [ "$(readlink "$pid/root" 2>/dev/null)" = "$dir" ] && kill "${pid#/proc/}" 2>/dev/null
  done
  true
}

in_chroot() { local dir=$work/$1; shift; chroot "$dir" "$@"; }

use_test_dns() { # the chroot resolves through receiver.py only
  printf 'nameserver 127.0.0.53\noptions attempts:1 timeout:2\n' >"$work/$1/etc/resolv.conf"
  printf '127.0.0.1 localhost\n127.0.0.1 mta-%s.sender.test mta-%s\n' "$1" "$1" >"$work/$1/etc/hosts"
  echo "sender.test" >"$work/$1/etc/mailname"
}

# --- the probes -----------------------------------------------------------------------------
# One message per scenario: FROM (the capture address naming the scenario), TO... (recipients).
probe_message() { # SCENARIO TO SIZE
  printf 'From: Newsletter <news@sender.test>\nTo: %s\nSubject: realmta probe %s\nMessage-ID: <%s.%s@sender.test>\nDate: %s\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nX-Realmta-Probe: %s\n\nThis is a probe of tools/realmta (%s).\n' \
    "$2" "$1" "$1" "$RANDOM$RANDOM" "$(date -R)" "$1" "$1"
  if [ "${3:-0}" -gt 0 ]; then head -c "$3" /dev/zero | tr '\0' 'x' | fold -w 76; echo; fi
}

# The scenarios every MTA is sent: provider refusals, then the MTA's own situations.
scenarios() { # MTA; prints: SCENARIO|RECIPIENTS|BODY_SIZE
  python3 - "$here/scenarios.toml" <<'PY'
import sys, tomllib
ps = tomllib.load(open(sys.argv[1], "rb"))["provider"]
for p in ps:
    if p.get("connect"):
        print(f"connect.{p['domain']}|someone@{p['domain']}|0")
    for r in p.get("refusal", []):
        size = 30000 if r["user"] == "big-message" else 0
        print(f"{r['user']}.{p['domain']}|{r['user']}@{p['domain']}|{size}")
# Several recipients in one message, refused at RCPT in different ways, beside one accepted.
print("multi.gmail.com|no-such-user@gmail.com,disabled-account@gmail.com,alice@gmail.com|0")
print("multi.example-shop.test|unknown@example-shop.test,quota@example-shop.test,relay-denied@example-shop.test|0")
print("nxdomain|someone@no-such-domain.test|0")
print("null-mx|someone@null-mx.test|0")
print("unreachable|someone@unreachable.test|0")
PY
  echo "local-unknown|nobody-here@LOCAL|0"
  echo "local-full|fulluser@LOCAL|0"
  [ "$1" = postfix ] && echo "vacation|vacationer@LOCAL|0"
  true
}

send_all() { # MTA SENDMAIL_COMMAND...
  local mta=$1; shift
  local n=0
  while IFS='|' read -r scenario rcpts size; do
    rcpts=${rcpts//LOCAL/mta-$mta.sender.test}
    probe_message "$mta.$scenario" "${rcpts//,/, }" "$size" |
      in_chroot "$mta" "$@" -f "$mta=$scenario@capture.test" ${rcpts//,/ } || log "$mta: $scenario not accepted for sending"
    n=$((n + 1))
  done < <(scenarios "$mta")
  log "$mta: $n probes handed over"
}

local_users() { # a user with a full mailbox, for the MTA's local delivery
  in_chroot "$1" sh -c 'id fulluser >/dev/null 2>&1 || useradd -m fulluser; touch /var/mail/fulluser; chown fulluser:mail /var/mail/fulluser; chmod 660 /var/mail/fulluser'
}

nearly_full_mailbox() { # MTA: fulluser's mbox holds 49,000 bytes, just under a 50,000 limit
  head -c 49000 /dev/zero | tr '\0' 'x' | fold -w 76 |
    sed '1s/^/From someone Thu Jan  1 00:00:00 2026\n/' >"$work/$1/var/mail/fulluser"
}

# --- Postfix --------------------------------------------------------------------------------
setup_postfix() {
  chroot_for postfix postfix dovecot-core dovecot-sieve
  use_test_dns postfix
  local_users postfix
  local d=$work/postfix
  cat >"$d/etc/postfix/main.cf" <<CF
compatibility_level = 3.6
myhostname = mta-postfix.sender.test
mydomain = sender.test
myorigin = \$mydomain
mydestination = \$myhostname, localhost
inet_interfaces = loopback-only
inet_protocols = ipv4
alias_maps = hash:/etc/aliases
alias_database = hash:/etc/aliases
smtp_tls_security_level = none
smtp_address_preference = ipv4
# A short life, so that deferrals end in a bounce within minutes.
maximal_queue_lifetime = 4m
bounce_queue_lifetime = 4m
delay_warning_time = 1m
queue_run_delay = 20s
minimal_backoff_time = 20s
maximal_backoff_time = 40s
message_size_limit = 40000
mailbox_size_limit = 50000
mailbox_command_maps = hash:/etc/postfix/mailbox_commands
CF
  # No listener on port 25; nothing in Postfix's own chroot (the DNS must be ours).
  sed -i -E 's/^(smtp +inet .*)$/#\1/' "$d/etc/postfix/master.cf"
  in_chroot postfix postconf -F '*/*/chroot = n'
  in_chroot postfix newaliases
  # A user away on holiday: Dovecot's LDA delivers, Pigeonhole's vacation answers (once a day).
  in_chroot postfix sh -c 'id vacationer >/dev/null 2>&1 || useradd -m vacationer'
  cat >"$d/home/vacationer/.dovecot.sieve" <<'SIEVE'
require ["vacation"];
vacation :days 1 :subject "Out of office until 14 December"
  "Thank you for your message. I am out of the office until 14 December and will read it when I am back.";
SIEVE
  rm -rf "$d/home/vacationer/sieve" "$d/home/vacationer/mail" "$d/home/vacationer/.dovecot.svbin"
  in_chroot postfix sh -c 'chown -R vacationer: /home/vacationer; touch /var/mail/vacationer; chown vacationer:mail /var/mail/vacationer; chmod 660 /var/mail/vacationer'
  cat >"$d/etc/dovecot/local.conf" <<'DV'
mail_location = mbox:~/mail:INBOX=/var/mail/%u
postmaster_address = postmaster@sender.test
hostname = mta-postfix.sender.test
protocol lda {
  mail_plugins = $mail_plugins sieve
}
DV
  echo 'vacationer /usr/lib/dovecot/dovecot-lda -f "$SENDER" -a "$RECIPIENT"' >"$d/etc/postfix/mailbox_commands"
  in_chroot postfix postmap /etc/postfix/mailbox_commands
  nearly_full_mailbox postfix # the next message goes over mailbox_size_limit
  in_chroot postfix postsuper -d ALL 2>/dev/null || true
  in_chroot postfix postfix start
}

stop_postfix() { in_chroot postfix postfix stop || true; }

send_postfix() { send_all postfix /usr/sbin/sendmail -i; }

# --- Exim -----------------------------------------------------------------------------------
setup_exim() {
  chroot_for exim exim4-daemon-light
  use_test_dns exim
  local_users exim
  cat >"$work/exim/etc/exim4/exim4.conf" <<'CF'
primary_hostname = mta-exim.sender.test
qualify_domain = sender.test
domainlist local_domains = mta-exim.sender.test : localhost
disable_ipv6 = true
message_size_limit = 40k
delay_warning = 1m
delay_warning_condition = true
timeout_frozen_after = 10m
keep_environment =

begin routers
dnslookup:
  driver = dnslookup
  domains = ! +local_domains
  transport = remote_smtp
  no_more
local_user:
  driver = accept
  domains = +local_domains
  check_local_user
  transport = local_delivery

begin transports
remote_smtp:
  driver = smtp
local_delivery:
  driver = appendfile
  file = /var/mail/$local_part_data
  delivery_date_add
  envelope_to_add
  return_path_add
  group = mail
  mode = 0660
  quota = 50k

begin retry
*   *   F,4m,20s
CF
  nearly_full_mailbox exim # the next message goes over the transport's quota
  rm -rf "$work/exim/var/spool/exim4/input" "$work/exim/var/spool/exim4/db"
  # The queue runner, for retries and delay warnings (no daemon: nothing listens).
  (while sleep 15; do in_chroot exim /usr/sbin/exim4 -q; done) &
  echo $! >"$work/exim.runner"
}
stop_exim() { kill "$(cat "$work/exim.runner")" 2>/dev/null || true; }
send_exim() { send_all exim /usr/sbin/exim4 -odi -i; }

# --- Sendmail -------------------------------------------------------------------------------
setup_sendmail() {
  chroot_for sendmail sendmail-bin sendmail-cf m4
  use_test_dns sendmail
  local_users sendmail
  cat >"$work/sendmail/etc/mail/realmta.mc" <<'MC'
divert(-1)
divert(0)dnl
include(`/usr/share/sendmail/cf/m4/cf.m4')dnl
VERSIONID(`tools/realmta')dnl
OSTYPE(`debian')dnl
define(`confDOMAIN_NAME', `mta-sendmail.sender.test')dnl
define(`confTO_QUEUEWARN', `1m')dnl
define(`confTO_QUEUERETURN', `4m')dnl
define(`confMAX_MESSAGE_SIZE', `40000')dnl
define(`confDONT_PROBE_INTERFACES', `True')dnl
define(`confMIN_QUEUE_AGE', `0')dnl
MASQUERADE_AS(`sender.test')dnl
FEATURE(`no_default_msa')dnl
DAEMON_OPTIONS(`Family=inet, Name=MTA-v4, Port=2526, Addr=127.0.0.9')dnl
MAILER(`local')dnl
MAILER(`smtp')dnl
MC
  in_chroot sendmail sh -c 'm4 /etc/mail/realmta.mc > /etc/mail/sendmail.cf'
  in_chroot sendmail sh -c 'rm -rf /var/spool/mqueue/* /var/spool/mqueue-client/* /var/lib/sendmail/host_status; mkdir -p /var/lib/sendmail/host_status; chown root:smmsp /var/spool/mqueue; chmod 2770 /var/spool/mqueue'
  (while sleep 15; do in_chroot sendmail /usr/sbin/sendmail -Am -q; done) &
  echo $! >"$work/sendmail.runner"
}
stop_sendmail() { kill "$(cat "$work/sendmail.runner")" 2>/dev/null || true; }
send_sendmail() { send_all sendmail /usr/sbin/sendmail -Am -odi -i; }

# --- OpenSMTPD ------------------------------------------------------------------------------
setup_opensmtpd() {
  chroot_for opensmtpd opensmtpd
  use_test_dns opensmtpd
  local_users opensmtpd
  echo "mta-opensmtpd.sender.test" >"$work/opensmtpd/etc/mailname"
  cat >"$work/opensmtpd/etc/smtpd.conf" <<'CF'
table aliases file:/etc/aliases
queue ttl 4m
bounce warn-interval 1m
action "local" mbox alias <aliases>
action "relay" relay helo mta-opensmtpd.sender.test
match for local action "local"
match from local for any action "relay"
CF
  mount -t proc proc "$work/opensmtpd/proc" 2>/dev/null || true
  rm -rf "$work/opensmtpd/var/spool/smtpd/queue"/* "$work/opensmtpd/var/spool/smtpd/incoming"/*
  in_chroot opensmtpd /usr/sbin/smtpd
  # Its scheduler backs off for longer than the queue's life; retry every 15 seconds instead.
  (while sleep 15; do in_chroot opensmtpd /usr/sbin/smtpctl schedule all >/dev/null 2>&1; done) &
  echo $! >"$work/opensmtpd.runner"
}
stop_opensmtpd() {
  kill "$(cat "$work/opensmtpd.runner")" 2>/dev/null || true
  in_chroot opensmtpd /usr/sbin/smtpctl stop 2>/dev/null || true
  umount "$work/opensmtpd/proc" 2>/dev/null || true
}
send_opensmtpd() { send_all opensmtpd /usr/sbin/sendmail -i; }

# --- Courier --------------------------------------------------------------------------------
setup_courier() {
  chroot_for courier courier-mta
  use_test_dns courier
  local c=$work/courier/etc/courier
  echo mta-courier.sender.test >"$c/me"
  echo sender.test >"$c/defaultdomain"
  printf 'mta-courier.sender.test\nlocalhost\n' >"$c/locals"
  # A short life and quick retries, so that deferrals end in a bounce within minutes.
  echo 4m >"$c/queuetime"
  echo 1m >"$c/warntime"
  echo 20s >"$c/retryalpha"
  echo 1 >"$c/retrybeta"
  echo 20s >"$c/retrygamma"
  echo 1 >"$c/retrymaxdelta"
  sed -i 's/^ESMTP_USE_STARTTLS=1/ESMTP_USE_STARTTLS=0/; s/^ESMTP_PREFER_IPV6_MX=1/ESMTP_PREFER_IPV6_MX=0/' "$c/courierd"
  rm -rf "$work/courier/var/lib/courier/msgq"/* "$work/courier/var/lib/courier/msgs"/* 2>/dev/null || true
  mount -t proc proc "$work/courier/proc" 2>/dev/null || true
  in_chroot courier sh -c 'makealiases; authdaemond start; courier start'
}
stop_courier() {
  in_chroot courier courier stop 2>/dev/null || true
  in_chroot courier authdaemond stop 2>/dev/null || true
  sleep 1
  kill_chroot courier
  umount "$work/courier/proc" 2>/dev/null || true
}
send_courier() { send_all courier /usr/sbin/sendmail; }

# --- run ------------------------------------------------------------------------------------
log "receiver"
python3 -c 'import dnslib' 2>/dev/null || pip install -q dnslib
python3 "$here/receiver.py" "$here/scenarios.toml" "$out" >"$work/receiver.log" 2>&1 &
receiver=$!
trap 'kill $receiver 2>/dev/null; for m in $mtas; do stop_$m 2>/dev/null || true; kill_chroot $m; done' EXIT
sleep 1

for m in $mtas; do setup_$m; send_$m; done
wait=${WAIT:-420}
log "waiting ${wait}s for the MTAs to give up on the deferred probes"
sleep "$wait"
for m in $mtas; do stop_$m; done

python3 "$here/label.py" "$here/scenarios.toml" "$out" "$repo/tests/corpus/realmta"
