// Logging on Boost.Log: timestamped lines to stderr (and optionally a file), filtered by rank.
#pragma once

#include <boost/log/sources/severity_logger.hpp>
#include <boost/log/trivial.hpp>

#include <memory>
#include <string>

namespace rn::launch {

// Sets up the sinks of this process: stderr, format
//   [2026-11-27 23:59:01.123] [info] message
// Rank 0 logs from info up; the other ranks only warnings and errors, so N ranks do not print
// every line N times, and their lines start with "[rank N] ". `verbose` shows debug lines on
// every rank. Calling it again replaces the earlier setup (sinks included).
void init_logging(int rank, bool verbose);

// A log file while alive: the lines of this process from info up (debug with `verbose`), job
// lines (RN_LOG_JOB) left out; appending, so a resumed run continues its log.
class LogFile {
 public:
  explicit LogFile(const std::string& path);
  ~LogFile();
  LogFile(const LogFile&) = delete;
  LogFile& operator=(const LogFile&) = delete;

 private:
  struct Sink;
  std::unique_ptr<Sink> sink_;
};

// An ensemble job: the console shows only job lines (RN_LOG_JOB: one progress line for all
// members) and every warning or error, while each member's own lines go to its train.log;
// lines logged from now on carry "[member NAME] " ("" removes it).
void set_console_to_job_lines(bool on);
void set_log_member(const std::string& name);

// The logger behind RN_LOG_JOB.
boost::log::sources::severity_logger_mt<boost::log::trivial::severity_level>& job_logger();

// Removes every sink; later records go nowhere.
void shutdown_logging();

}  // namespace rn::launch

// RN_LOG(info) << "epoch " << e;  levels: trace, debug, info, warning, error, fatal.
#define RN_LOG(severity) BOOST_LOG_TRIVIAL(severity)
// A line about the whole job (an ensemble's progress), shown on the console in ensemble jobs.
#define RN_LOG_JOB(severity) \
  BOOST_LOG_SEV(::rn::launch::job_logger(), ::boost::log::trivial::severity)
