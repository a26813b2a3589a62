// Logging on Boost.Log: timestamped lines to stderr (and optionally a file), filtered by rank.
#pragma once

#include <boost/log/trivial.hpp>

#include <string>

namespace rn::launch {

// Sets up the sinks of this process: stderr, format
//   [2026-11-27 23:59:01.123] [info] message
// Rank 0 logs from info up; the other ranks only warnings and errors, so N ranks do not print
// every line N times, and their lines start with "[rank N] ". `verbose` shows debug lines on
// every rank. Calling it again replaces the earlier setup (sinks included).
void init_logging(int rank, bool verbose);

// Also writes the same lines to `path` (appending, so a resumed run continues its log).
void add_log_file(const std::string& path);

// Removes every sink; later records go nowhere.
void shutdown_logging();

}  // namespace rn::launch

// RN_LOG(info) << "epoch " << e;  levels: trace, debug, info, warning, error, fatal.
#define RN_LOG(severity) BOOST_LOG_TRIVIAL(severity)
