// Flag parsing for the subcommands.
#include "launch/cli/args.h"

#include <algorithm>
#include <charconv>

#include "core/check.h"

namespace rn::launch {

namespace {

bool is_help(const std::string& a) {
  return a == "--help" || a == "-h";
}

std::string flag_usage(const Flag& f) {
  std::string s = "--" + f.name + (f.arg.empty() ? "" : " " + f.arg);
  if (f.required) return s;
  return "[" + s + "]" + (f.takes == Flag::Takes::values ? "..." : "");
}

// "usage: resnet NAME ..." wrapped at 100 columns, continuation lines indented.
std::string usage_line(const CommandSpec& c) {
  std::string out = "usage: resnet " + c.name, line;
  const size_t indent = 14 + c.name.size() + 1;
  std::vector<std::string> words;
  if (!c.positional.empty()) words.push_back(c.positional);
  for (const auto& f : c.flags) words.push_back(flag_usage(f));
  if (!c.operands.empty()) words.push_back(c.operands);
  size_t width = out.size();
  for (const auto& w : words) {
    if (width + 1 + w.size() > 100) {
      out.append("\n").append(indent, ' ').append(w);
      width = indent + w.size();
    } else {
      out += " " + w;
      width += 1 + w.size();
    }
  }
  return out + "\n";
}

// Rows of "  LEFT  help", the left column as wide as the widest (at most 30).
std::string rows(const std::vector<std::pair<std::string, std::string>>& items) {
  size_t w = 0;
  for (const auto& [left, help] : items) w = std::max(w, left.size());
  w = std::min<size_t>(w, 30);
  std::string out;
  for (const auto& [left, help] : items) {
    out += "  " + left;
    if (left.size() > w)
      out.append("\n").append(w + 4, ' ');
    else
      out.append(w - left.size() + 2, ' ');
    out += wrap_text(help, 100, w + 4, w + 4) + "\n";
  }
  return out;
}

std::string group_usage(const CommandGroup& g) {
  return "usage: resnet " + g.name + " " + subcommand_names(g) + " [flags]";
}

}  // namespace

std::string wrap_text(const std::string& text, size_t width, size_t indent, size_t first_column) {
  std::string out;
  size_t column = first_column;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(' ', start);
    if (end == std::string::npos) end = text.size();
    const std::string word = text.substr(start, end - start);
    const bool first_word = out.empty();
    if (!first_word && column + 1 + word.size() > width) {
      out.append("\n").append(indent, ' ');
      column = indent;
    } else if (!first_word) {
      out += " ";
      ++column;
    }
    out += word;
    column += word.size();
    start = end + 1;
  }
  return out;
}

std::string subcommand_names(const CommandGroup& g) {
  std::string names;
  for (const auto* c : g.commands) {
    if (!names.empty()) names += '|';
    names.append(c->name, g.name.size() + 1);
  }
  return names;
}

std::string flag_list(const CommandSpec& c) {
  std::string out;
  for (Flag::Takes t : {Flag::Takes::value, Flag::Takes::values, Flag::Takes::nothing}) {
    std::vector<std::string> names;
    for (const auto& f : c.flags)
      if (f.takes == t) names.push_back(f.name);
    std::sort(names.begin(), names.end());
    for (const auto& n : names) out += (out.empty() ? "--" : ", --") + n;
  }
  return out;
}

std::string help_text(const CommandSpec& c) {
  std::vector<std::pair<std::string, std::string>> items;
  for (const auto& f : c.flags)
    items.emplace_back("--" + f.name + (f.arg.empty() ? "" : " " + f.arg),
                       f.help + (f.required ? " (required)" : ""));
  items.emplace_back("-h, --help", "this help");
  return usage_line(c) + "\n" + wrap_text(c.summary, 100, 0, 0) + "\n\n" + rows(items);
}

std::string help_text(const CommandGroup& g) {
  std::vector<std::pair<std::string, std::string>> items;
  for (const auto* c : g.commands)
    items.emplace_back(c->name.substr(g.name.size() + 1), c->summary);
  return group_usage(g) + "\n\n" + wrap_text(g.summary, 100, 0, 0) + "\n\n" + rows(items) +
         "\nresnet " + g.name + " <command> --help gives a command's flags.\n";
}

bool asks_for_help(const std::vector<std::string>& argv) {
  return std::any_of(argv.begin(), argv.end(), is_help);
}

Args::Args(const std::vector<std::string>& argv, const CommandSpec& spec) {
  if (asks_for_help(argv)) throw HelpRequested{help_text(spec)};
  auto find = [&](const std::string& name) -> const Flag* {
    for (const auto& f : spec.flags)
      if (f.name == name) return &f;
    return nullptr;
  };
  for (size_t i = 0; i < argv.size(); ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0 && !spec.operands.empty()) {
      operands_.push_back(a);
      continue;
    }
    if (a.rfind("--", 0) != 0)
      RN_FAIL("unexpected argument '" << a << "'; flags: " << flag_list(spec));
    std::string name = a.substr(2), value;
    const bool inline_value = name.find('=') != std::string::npos;
    if (inline_value) {
      value = name.substr(name.find('=') + 1);
      name = name.substr(0, name.find('='));
    }
    const Flag* f = find(name);
    if (f && f->takes == Flag::Takes::nothing) {
      if (inline_value) RN_FAIL("--" << name << " takes no value");
      values_[name].push_back("");
      continue;
    }
    if (!f) RN_FAIL("unknown flag --" << name << "; flags: " << flag_list(spec));
    if (!inline_value) {
      if (i + 1 >= argv.size()) RN_FAIL("--" << name << " needs a value");
      value = argv[++i];
    }
    if (f->takes == Flag::Takes::value && values_.count(name))
      RN_FAIL("--" << name << " given twice");
    values_[name].push_back(value);
  }
}

std::string positional(const std::vector<std::string>& argv, const CommandSpec& spec) {
  if (asks_for_help(argv)) throw HelpRequested{help_text(spec)};
  if (argv.empty() || argv[0].rfind("--", 0) == 0)
    RN_FAIL(spec.name << " needs a " << spec.positional << ": "
                      << usage_line(spec).substr(7, usage_line(spec).size() - 8));
  return argv[0];
}

const CommandSpec& subcommand(const std::vector<std::string>& argv, const CommandGroup& group) {
  if (!argv.empty() && is_help(argv[0])) throw HelpRequested{help_text(group)};
  if (argv.empty()) RN_FAIL(group_usage(group) << " (resnet " << group.name << " --help)");
  for (const auto* c : group.commands)
    if (c->name == group.name + " " + argv[0]) return *c;
  RN_FAIL("unknown " << group.name << " command '" << argv[0] << "'; " << group_usage(group));
}

bool Args::has(const std::string& name) const {
  return values_.count(name) > 0;
}

std::string Args::get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second.front();
}

std::string Args::required(const std::string& name) const {
  if (!has(name)) RN_FAIL("--" << name << " is required");
  return get(name);
}

int Args::get_int(const std::string& name, int fallback) const {
  if (!has(name)) return fallback;
  const std::string v = get(name);
  int out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size())
    RN_FAIL("--" << name << " must be an integer, got '" << v << "'");
  return out;
}

std::vector<std::string> Args::all(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

std::vector<int64_t> parse_dims(const std::string& text, size_t count, const std::string& what) {
  std::vector<int64_t> dims;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('x', start);
    if (end == std::string::npos) end = text.size();
    int64_t v = 0;
    auto [p, ec] = std::from_chars(text.data() + start, text.data() + end, v);
    if (ec != std::errc() || p != text.data() + end || v <= 0)
      RN_FAIL(what << " must be " << count
                   << " positive integers joined by 'x' (e.g. 3x224x224), got '" << text << "'");
    dims.push_back(v);
    start = end + 1;
  }
  if (dims.size() != count)
    RN_FAIL(what << " must be " << count << " positive integers joined by 'x', got '" << text
                 << "'");
  return dims;
}

}  // namespace rn::launch
