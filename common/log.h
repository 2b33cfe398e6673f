// Minimal structured logging to stderr: text or JSON lines. Never pass personal data (names, ID
// numbers, addresses, pregnancy status) as a field: log ids, codes, counts and statuses only.
#ifndef CASEWAY_COMMON_LOG_H_
#define CASEWAY_COMMON_LOG_H_

#include <initializer_list>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"

namespace caseway::common {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// ConfigureLog sets the threshold and the format (json = true for JSON lines). Call once at
// start-up before other threads log.
void ConfigureLog(LogLevel level, bool json);

// ParseLogLevel maps "debug"/"info"/"warn"/"error"; anything else is kInfo.
LogLevel ParseLogLevel(absl::string_view name);

using LogField = std::pair<absl::string_view, std::string>;

// Log writes one line: time, level, message and key=value fields. Thread-safe.
void Log(LogLevel level, absl::string_view message, std::initializer_list<LogField> fields = {});

// LogLimited is Log for events a caller can provoke at will (refused handshakes and calls,
// refused streams): at most 10 lines per second per message; the next line written says how many
// were left out (`suppressed=N`), so a flood cannot fill the disk with log lines.
void LogLimited(LogLevel level, absl::string_view message,
                std::initializer_list<LogField> fields = {});

}  // namespace caseway::common

#endif  // CASEWAY_COMMON_LOG_H_
