// The Boost.Log sinks, filter and line format behind RN_LOG.
#include "launch/train/logging.h"

#include <boost/core/null_deleter.hpp>
#include <boost/date_time/posix_time/posix_time_types.hpp>
#include <boost/log/attributes/constant.hpp>
#include <boost/log/core.hpp>
#include <boost/log/expressions.hpp>
#include <boost/log/sinks/sync_frontend.hpp>
#include <boost/log/sinks/text_ostream_backend.hpp>
#include <boost/log/sources/severity_logger.hpp>
#include <boost/log/utility/setup/common_attributes.hpp>
#include <boost/make_shared.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>

#include "core/check.h"

namespace rn::launch {
namespace {

namespace logging = boost::log;
using Severity = logging::trivial::severity_level;
using TextSink = logging::sinks::synchronous_sink<logging::sinks::text_ostream_backend>;

// The rank travels as a global attribute rather than a variable of this file, so the
// formatter of every sink (added now or later) reads the same value from the record.
constexpr const char* kRankAttribute = "Rank";
constexpr const char* kMemberAttribute = "Member";  // the ensemble member a line is about
constexpr const char* kJobAttribute = "Job";        // set on RN_LOG_JOB's lines

// The console's filter, rebuilt when an ensemble job changes it: the logging core is one per
// process, and so is this.
struct ConsoleState {
  boost::shared_ptr<TextSink> sink;
  Severity threshold = logging::trivial::info;
  Severity file_threshold = logging::trivial::info;
  bool job_lines_only = false;
};
ConsoleState& console() {
  static ConsoleState state;
  return state;
}

bool is_job_line(const logging::attribute_value_set& attrs) {
  return attrs.count(kJobAttribute) > 0;
}

void apply_console_filter() {
  ConsoleState& c = console();
  if (!c.sink) return;
  const Severity threshold = c.threshold;
  const bool job_only = c.job_lines_only;
  c.sink->set_filter([threshold, job_only](const logging::attribute_value_set& attrs) {
    const auto severity = attrs[logging::trivial::severity];
    if (!severity || *severity < threshold) return false;
    return !job_only || is_job_line(attrs) || *severity >= logging::trivial::warning;
  });
}

void format_record(const logging::record_view& rec, logging::formatting_ostream& out) {
  if (auto rank = logging::extract<int>(kRankAttribute, rec); rank && *rank != 0) {
    out << "[rank " << *rank << "] ";
  }
  if (auto member = logging::extract<std::string>(kMemberAttribute, rec);
      member && !logging::extract<bool>(kJobAttribute, rec)) {
    out << "[member " << *member << "] ";
  }
  if (auto stamp = logging::extract<boost::posix_time::ptime>("TimeStamp", rec)) {
    const auto date = stamp->date();
    const auto time = stamp->time_of_day();
    char text[40];
    std::snprintf(text, sizeof text, "[%04d-%02d-%02d %02d:%02d:%02d.%03d] ",
                  static_cast<int>(date.year()), static_cast<int>(date.month()),
                  static_cast<int>(date.day()), static_cast<int>(time.hours()),
                  static_cast<int>(time.minutes()), static_cast<int>(time.seconds()),
                  static_cast<int>(time.total_milliseconds() % 1000));
    out << text;
  }
  if (auto severity = logging::extract<Severity>("Severity", rec)) {
    out << "[" << logging::trivial::to_string(*severity) << "] ";
  }
  out << rec[logging::expressions::smessage];
}

boost::shared_ptr<TextSink> add_stream_sink(const boost::shared_ptr<std::ostream>& stream) {
  auto backend = boost::make_shared<logging::sinks::text_ostream_backend>();
  backend->add_stream(stream);
  // Flush every line: after a crash (or MPI_Abort) the last lines are the ones that matter.
  backend->auto_flush(true);
  auto sink = boost::make_shared<TextSink>(backend);
  sink->set_formatter(&format_record);
  logging::core::get()->add_sink(sink);
  return sink;
}

}  // namespace

void init_logging(int rank, bool verbose) {
  auto core = logging::core::get();
  core->remove_all_sinks();
  core->set_logging_enabled(true);
  logging::add_common_attributes();
  // add_global_attribute keeps an existing value, so a second call must drop the old rank.
  auto attributes = core->get_global_attributes();
  attributes.erase(kRankAttribute);
  attributes.insert(kRankAttribute, logging::attributes::constant<int>(rank));
  attributes.erase(kMemberAttribute);
  core->set_global_attributes(attributes);
  core->reset_filter();

  // Each sink filters for itself: a rank other than 0 keeps its console to warnings, yet its
  // train.log (an ensemble member's leader) takes every info line.
  ConsoleState& c = console();
  c.threshold = verbose ? logging::trivial::debug
                        : (rank == 0 ? logging::trivial::info : logging::trivial::warning);
  c.file_threshold = verbose ? logging::trivial::debug : logging::trivial::info;
  c.job_lines_only = false;
  c.sink = add_stream_sink(boost::shared_ptr<std::ostream>(&std::clog, boost::null_deleter()));
  apply_console_filter();
}

struct LogFile::Sink {
  boost::shared_ptr<TextSink> sink;
};

LogFile::LogFile(const std::string& path) : sink_(std::make_unique<Sink>()) {
  auto file = boost::make_shared<std::ofstream>(path, std::ios::app);
  if (!*file) RN_FAIL(path << ": cannot open log file: " << std::strerror(errno));
  sink_->sink = add_stream_sink(file);
  const Severity threshold = console().file_threshold;
  sink_->sink->set_filter([threshold](const logging::attribute_value_set& attrs) {
    const auto severity = attrs[logging::trivial::severity];
    return severity && *severity >= threshold && !is_job_line(attrs);
  });
}

LogFile::~LogFile() {
  auto core = logging::core::get();
  sink_->sink->flush();
  core->remove_sink(sink_->sink);
}

void set_console_to_job_lines(bool on) {
  console().job_lines_only = on;
  apply_console_filter();
}

void set_log_member(const std::string& name) {
  auto core = logging::core::get();
  auto attributes = core->get_global_attributes();
  attributes.erase(kMemberAttribute);
  if (!name.empty())
    attributes.insert(kMemberAttribute, logging::attributes::constant<std::string>(name));
  core->set_global_attributes(attributes);
}

boost::log::sources::severity_logger_mt<Severity>& job_logger() {
  static boost::log::sources::severity_logger_mt<Severity> logger = [] {
    boost::log::sources::severity_logger_mt<Severity> l;
    l.add_attribute(kJobAttribute, logging::attributes::constant<bool>(true));
    return l;
  }();
  return logger;
}

void shutdown_logging() {
  auto core = logging::core::get();
  core->flush();
  core->remove_all_sinks();
  console().sink.reset();
  // With no sinks Boost.Log falls back to a default sink that prints every record.
  core->set_logging_enabled(false);
}

}  // namespace rn::launch
