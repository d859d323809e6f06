#include "tests/schema/cel.h"

#include <cctype>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace rpci::schema {
namespace {

using nlohmann::json;

struct Node {
  enum Kind { kLiteral, kSelf, kSelect, kHas, kSize, kNot, kBinary } kind;
  json literal;
  std::string name;  // field for kSelect / kHas, operator for kBinary
  std::vector<std::unique_ptr<Node>> args;
};
using NodePtr = std::unique_ptr<Node>;

NodePtr Make(Node::Kind kind) {
  auto n = std::make_unique<Node>();
  n->kind = kind;
  return n;
}

class Parser {
 public:
  explicit Parser(const std::string& text) : text_(text) {}

  absl::StatusOr<NodePtr> ParseAll() {
    absl::StatusOr<NodePtr> n = Or();
    if (!n.ok()) return n;
    Skip();
    if (pos_ != text_.size()) return Error("unexpected text");
    return n;
  }

 private:
  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat("CEL rule \"", text_, "\": ", what, " at offset ", pos_));
  }
  void Skip() {
    while (pos_ < text_.size() && isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool Eat(const std::string& token) {
    Skip();
    if (text_.compare(pos_, token.size(), token) != 0) return false;
    pos_ += token.size();
    return true;
  }
  std::string Ident() {
    Skip();
    size_t start = pos_;
    while (pos_ < text_.size() && (isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '_')) ++pos_;
    return text_.substr(start, pos_ - start);
  }

  absl::StatusOr<NodePtr> Binary(absl::StatusOr<NodePtr> (Parser::*next)(), const std::vector<std::string>& ops,
                                 bool repeat) {
    absl::StatusOr<NodePtr> left = (this->*next)();
    if (!left.ok()) return left;
    while (true) {
      std::string op;
      for (const std::string& o : ops) {
        // "<" must not eat the first half of "<=".
        if (Eat(o)) {
          op = o;
          break;
        }
      }
      if (op.empty()) return left;
      absl::StatusOr<NodePtr> right = (this->*next)();
      if (!right.ok()) return right;
      NodePtr n = Make(Node::kBinary);
      n->name = op;
      n->args.push_back(*std::move(left));
      n->args.push_back(*std::move(right));
      left = std::move(n);
      if (!repeat) return left;
    }
  }
  absl::StatusOr<NodePtr> Or() { return Binary(&Parser::And, {"||"}, true); }
  absl::StatusOr<NodePtr> And() { return Binary(&Parser::Compare, {"&&"}, true); }
  absl::StatusOr<NodePtr> Compare() { return Binary(&Parser::Add, {"==", "!=", "<=", ">=", "<", ">"}, false); }
  absl::StatusOr<NodePtr> Add() { return Binary(&Parser::Unary, {"+"}, true); }

  absl::StatusOr<NodePtr> Unary() {
    if (Eat("!")) {
      absl::StatusOr<NodePtr> inner = Unary();
      if (!inner.ok()) return inner;
      NodePtr n = Make(Node::kNot);
      n->args.push_back(*std::move(inner));
      return n;
    }
    return Postfix();
  }

  absl::StatusOr<NodePtr> Postfix() {
    absl::StatusOr<NodePtr> n = Primary();
    if (!n.ok()) return n;
    while (Eat(".")) {
      std::string field = Ident();
      if (field.empty()) return Error("expected a field name");
      if (Eat("(")) {
        if (field != "size" || !Eat(")")) return Error(absl::StrCat("method ", field, "() is not supported"));
        NodePtr s = Make(Node::kSize);
        s->args.push_back(*std::move(n));
        n = std::move(s);
        continue;
      }
      NodePtr s = Make(Node::kSelect);
      s->name = field;
      s->args.push_back(*std::move(n));
      n = std::move(s);
    }
    return n;
  }

  absl::StatusOr<NodePtr> Primary() {
    Skip();
    if (pos_ >= text_.size()) return Error("unexpected end");
    const char c = text_[pos_];
    if (c == '(') {
      ++pos_;
      absl::StatusOr<NodePtr> inner = Or();
      if (!inner.ok()) return inner;
      if (!Eat(")")) return Error("expected )");
      return inner;
    }
    if (c == '\'' || c == '"') return String(c);
    if (isdigit(static_cast<unsigned char>(c))) {
      size_t start = pos_;
      while (pos_ < text_.size() && isdigit(static_cast<unsigned char>(text_[pos_]))) ++pos_;
      int64_t v = 0;
      if (!absl::SimpleAtoi(text_.substr(start, pos_ - start), &v)) return Error("integer out of range");
      NodePtr n = Make(Node::kLiteral);
      n->literal = v;
      return n;
    }
    const std::string id = Ident();
    if (id == "self") return Make(Node::kSelf);
    if (id == "true" || id == "false") {
      NodePtr n = Make(Node::kLiteral);
      n->literal = id == "true";
      return n;
    }
    if ((id == "has" || id == "size") && Eat("(")) {
      absl::StatusOr<NodePtr> arg = Postfix();
      if (!arg.ok()) return arg;
      if (!Eat(")")) return Error("expected )");
      if (id == "has" && (*arg)->kind != Node::kSelect) return Error("has() needs a field selection");
      NodePtr n = Make(id == "has" ? Node::kHas : Node::kSize);
      n->args.push_back(*std::move(arg));
      return n;
    }
    return Error(absl::StrCat("\"", id, "\" is not supported"));
  }

  absl::StatusOr<NodePtr> String(char quote) {
    ++pos_;
    std::string out;
    while (pos_ < text_.size() && text_[pos_] != quote) {
      if (text_[pos_] == '\\' && pos_ + 1 < text_.size()) ++pos_;
      out += text_[pos_++];
    }
    if (pos_ >= text_.size()) return Error("unterminated string");
    ++pos_;
    NodePtr n = Make(Node::kLiteral);
    n->literal = out;
    return n;
  }

  const std::string& text_;
  size_t pos_ = 0;
};

absl::Status RuntimeError(const std::string& what) { return absl::FailedPreconditionError(what); }

absl::StatusOr<json> Eval(const Node& n, const json& self);

absl::StatusOr<json> EvalBinary(const Node& n, const json& self) {
  absl::StatusOr<json> l = Eval(*n.args[0], self);
  if (!l.ok()) return l;
  const std::string& op = n.name;
  if (op == "&&" || op == "||") {
    if (!l->is_boolean()) return RuntimeError(absl::StrCat("no such overload: ", op, " on ", l->type_name()));
    if (op == "&&" && !l->get<bool>()) return json(false);
    if (op == "||" && l->get<bool>()) return json(true);
    absl::StatusOr<json> r = Eval(*n.args[1], self);
    if (!r.ok()) return r;
    if (!r->is_boolean()) return RuntimeError(absl::StrCat("no such overload: ", op, " on ", r->type_name()));
    return r;
  }
  absl::StatusOr<json> r = Eval(*n.args[1], self);
  if (!r.ok()) return r;
  if (op == "==") return json(*l == *r);
  if (op == "!=") return json(*l != *r);
  const bool strings = l->is_string() && r->is_string();
  const bool ints = l->is_number_integer() && r->is_number_integer();
  if (!strings && !ints) {
    return RuntimeError(absl::StrCat("no such overload: ", l->type_name(), " ", op, " ", r->type_name()));
  }
  if (op == "+") {
    if (strings) return json(l->get<std::string>() + r->get<std::string>());
    return json(l->get<int64_t>() + r->get<int64_t>());
  }
  const int cmp = strings ? l->get<std::string>().compare(r->get<std::string>())
                          : (l->get<int64_t>() < r->get<int64_t>() ? -1 : l->get<int64_t>() > r->get<int64_t>());
  if (op == "<") return json(cmp < 0);
  if (op == "<=") return json(cmp <= 0);
  if (op == ">") return json(cmp > 0);
  return json(cmp >= 0);
}

absl::StatusOr<json> Eval(const Node& n, const json& self) {
  switch (n.kind) {
    case Node::kLiteral: return n.literal;
    case Node::kSelf: return self;
    case Node::kSelect:
    case Node::kHas: {
      const Node& target = n.kind == Node::kHas ? *n.args[0] : n;
      absl::StatusOr<json> base = Eval(*target.args[0], self);
      if (!base.ok()) return base;
      const bool present = base->is_object() && base->contains(target.name);
      if (n.kind == Node::kHas) return json(present);
      if (!present) return RuntimeError(absl::StrCat("no such key: ", target.name));
      return (*base)[target.name];
    }
    case Node::kSize: {
      absl::StatusOr<json> v = Eval(*n.args[0], self);
      if (!v.ok()) return v;
      if (v->is_string()) return json(static_cast<int64_t>(v->get<std::string>().size()));
      if (v->is_array() || v->is_object()) return json(static_cast<int64_t>(v->size()));
      return RuntimeError(absl::StrCat("no such overload: size(", v->type_name(), ")"));
    }
    case Node::kNot: {
      absl::StatusOr<json> v = Eval(*n.args[0], self);
      if (!v.ok()) return v;
      if (!v->is_boolean()) return RuntimeError(absl::StrCat("no such overload: !", v->type_name()));
      return json(!v->get<bool>());
    }
    case Node::kBinary: return EvalBinary(n, self);
  }
  return RuntimeError("unknown node");
}

}  // namespace

absl::StatusOr<bool> EvaluateRule(const std::string& rule, const json& self) {
  absl::StatusOr<NodePtr> ast = Parser(rule).ParseAll();
  if (!ast.ok()) return ast.status();
  absl::StatusOr<json> v = Eval(**ast, self);
  if (!v.ok()) return v.status();
  if (!v->is_boolean()) return absl::InvalidArgumentError(absl::StrCat("CEL rule \"", rule, "\" is not a bool"));
  return v->get<bool>();
}

}  // namespace rpci::schema
