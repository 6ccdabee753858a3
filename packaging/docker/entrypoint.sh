#!/bin/sh
# Entry point of Aspen's container image (see compose.yaml).
#
#   aspen-entrypoint verifier          init (once) and start the verifier; its
#                                      peer ID goes to /shared/verifier.id
#   aspen-entrypoint node ROLE [FLAGS] wait for /shared/verifier.id, init (once)
#                                      and start a node pinned to the verifier
#   aspen-entrypoint COMMAND...        run COMMAND (e.g. aspen-node --help)
set -eu

case "${1:-}" in
verifier)
	shift
	if [ ! -f /data/verifier.json ]; then
		aspen-verifier init --data /data --listen /ip4/0.0.0.0/tcp/7400 --api 127.0.0.1:7340 "$@" >/data/init.txt
	fi
	sed -n 's/^peer ID: //p' /data/init.txt >/shared/verifier.id.tmp
	mv /shared/verifier.id.tmp /shared/verifier.id
	exec aspen-verifier start --data /data --log-format json
	;;
node)
	shift
	role="$1"
	shift
	i=0
	while [ ! -s /shared/verifier.id ]; do
		i=$((i + 1))
		if [ "$i" -gt 120 ]; then
			echo "aspen-entrypoint: no /shared/verifier.id after 120 s: is the verifier running?" >&2
			exit 1
		fi
		sleep 1
	done
	verifier="/dns4/${ASPEN_VERIFIER_HOST:-verifier}/tcp/7400/p2p/$(cat /shared/verifier.id)"
	if [ ! -f /data/config.json ]; then
		aspen-node init --data /data --role "$role" --verifier "$verifier" \
			--listen /ip4/0.0.0.0/tcp/7400 --api 0.0.0.0:7341 --api-allow-remote "$@"
	fi
	exec aspen-node start --data /data --log-format json
	;;
*)
	exec "$@"
	;;
esac
