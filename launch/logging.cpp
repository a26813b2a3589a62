// The Boost.Log sinks, filter and line format behind RN_LOG.
#include "launch/logging.h"

#include <boost/core/null_deleter.hpp>
#include <boost/date_time/posix_time/posix_time_types.hpp>
#include <boost/log/attributes/constant.hpp>
#include <boost/log/core.hpp>
#include <boost/log/expressions.hpp>
#include <boost/log/sinks/sync_frontend.hpp>
#include <boost/log/sinks/text_ostream_backend.hpp>
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

void format_record(const logging::record_view& rec, logging::formatting_ostream& out) {
  if (auto rank = logging::extract<int>(kRankAttribute, rec); rank && *rank != 0) {
    out << "[rank " << *rank << "] ";
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

void add_stream_sink(const boost::shared_ptr<std::ostream>& stream) {
  auto backend = boost::make_shared<logging::sinks::text_ostream_backend>();
  backend->add_stream(stream);
  // Flush every line: after a crash (or MPI_Abort) the last lines are the ones that matter.
  backend->auto_flush(true);
  auto sink = boost::make_shared<TextSink>(backend);
  sink->set_formatter(&format_record);
  logging::core::get()->add_sink(sink);
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
  core->set_global_attributes(attributes);

  const Severity threshold = verbose
                                 ? logging::trivial::debug
                                 : (rank == 0 ? logging::trivial::info : logging::trivial::warning);
  core->set_filter(logging::trivial::severity >= threshold);
  add_stream_sink(boost::shared_ptr<std::ostream>(&std::clog, boost::null_deleter()));
}

void add_log_file(const std::string& path) {
  auto file = boost::make_shared<std::ofstream>(path, std::ios::app);
  if (!*file) RN_FAIL(path << ": cannot open log file: " << std::strerror(errno));
  add_stream_sink(file);
}

void shutdown_logging() {
  auto core = logging::core::get();
  core->flush();
  core->remove_all_sinks();
  // With no sinks Boost.Log falls back to a default sink that prints every record.
  core->set_logging_enabled(false);
}

}  // namespace rn::launch
