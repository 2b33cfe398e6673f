#!/usr/bin/env bash
# layering_check.sh: the node's modules include only the layers below them (issue #12):
#   server/store     the store: nothing else of the node
#   server/log       the exchange log's services: the store's ExchangeLogStore and AccessLog
#                    interfaces, authorization
#   server/exchange  node-to-node delivery and queries: the store's interfaces, authorization
#   server/gateway   the local systems' API: the store's interfaces, authorization, the
#                    exchange's dispatcher and asker
# "The store's interfaces" are its narrow headers (channel_store.h, inbox_store.h,
# case_store.h, exchange_log_store.h, access_log.h, signer.h, and store_parts.h that bundles them), never
# NoticeStore or the SQL beneath it: only node.cc opens the store.
# and common/ nothing of server/ or client/. Exit 1 listing every include that reaches up or
# sideways, so a new one is a decision made in this file, not an accident.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bad=0
# check DIR ALLOWED_REGEX: every '#include "server/..."' or '"client/..."' in DIR must match.
check() {
  local dir=$1 allowed=$2
  while IFS= read -r line; do
    local inc=${line#*#include \"}
    inc=${inc%%\"*}
    if ! [[ $inc =~ $allowed ]]; then
      echo "layering: ${line%%:*} includes $inc (${dir} may include only: $allowed)"
      bad=1
    fi
  done < <(grep -rnE '^#include "(server|client)/' "$dir" --include='*.h' --include='*.cc' \
             | grep -v '_test\.cc:' || true)
}
check server/store    '^server/store/'
check server/log      '^server/log/|^server/store/(exchange_log_store|access_log|signer)\.h$|^server/(authz|authorized_first)\.h$'
api='^server/store/(channel_store|inbox_store|case_store|exchange_log_store|access_log|signer|store_parts)\.h$'
check server/exchange "^server/exchange/|$api|^server/(authz|authorized_first|error_policy)\.h\$"
check server/gateway  "^server/gateway/|$api|^server/exchange/(dispatcher|peer_asker)\.h\$|^server/(authz|authorized_first|error_policy)\.h\$"
check common          '^$'
if [ "$bad" = 0 ]; then echo "layering: every module includes only the layers below it"; fi
exit "$bad"
