// StoreParts: the store's interfaces, as node.cc hands them to the modules; each service keeps
// only those it uses.
#ifndef CASEWAY_SERVER_STORE_STORE_PARTS_H_
#define CASEWAY_SERVER_STORE_STORE_PARTS_H_

#include "common/policy.h"
#include "common/sharing.h"
#include "server/store/access_log.h"
#include "server/store/case_store.h"
#include "server/store/channel_store.h"
#include "server/store/exchange_log_store.h"
#include "server/store/inbox_store.h"

namespace caseway::server {

// StoreParts points at one store through its narrow interfaces (NoticeStore implements them
// all), with the federation policy and the sharing policy it was opened with (`sharing` may be
// null: none). Everything must outlive the services given it.
struct StoreParts {
  ChannelStore* channels = nullptr;  // published notices, their channels, batches sent
  InboxStore* inbox = nullptr;       // what was received, the inbox
  CaseStore* cases = nullptr;        // cases, queries, replies, the feed
  ExchangeLogStore* log = nullptr;   // the exchange log, checkpoints, integrity
  AccessLog* access = nullptr;       // reads of personal data
  const common::Policy* policy = nullptr;
  const common::SharingPolicy* sharing = nullptr;
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_STORE_STORE_PARTS_H_
