// weights/pickle.cpp: the restricted unpickler: a stack machine over the opcodes of pickle
// protocols 2 to 5 that torch.save (protocol 2 by default) and its dictionaries use.
#include "weights/pickle.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <set>
#include <unordered_map>

#include "engine/error.hpp"

namespace prism {
namespace {

constexpr int max_depth = 100;             // containers inside containers; state_dicts need 3 or 4
constexpr size_t max_values = 50'000'000;  // far beyond any checkpoint; a bound on memory
constexpr int max_dims = 8;

const std::set<std::string>& storage_types() {
  static const std::set<std::string> types = {"FloatStorage", "HalfStorage", "BFloat16Storage", "DoubleStorage",
                                              "LongStorage",  "IntStorage",  "ShortStorage",    "CharStorage",
                                              "ByteStorage",  "BoolStorage"};
  return types;
}

// Why a global is refused, with a hint where one helps.
std::string refusal(const std::string& global) {
  std::string message = "refusing to load: the pickle asks for " + global +
                        ", which a state_dict never needs (allowed: collections.OrderedDict, torch's tensor "
                        "rebuild functions and storage types)";
  if (global.rfind("torchvision.", 0) == 0 || global.rfind("torch.nn.", 0) == 0) {
    message += ". It looks like a whole model object was saved: save model.state_dict() instead, or convert it "
               "with tools/torchvision_to_h5.py, which runs Python's own unpickler (only on files you trust)";
  }
  return message;
}

class Machine {
 public:
  Machine(const uint8_t* data, size_t size, const std::string& source) : data_(data), size_(size), source_(source) {}

  PickleProgram run(size_t* end) {
    while (true) {
      const size_t at = position_;
      const uint8_t op = byte();
      if (op == '.') break;  // STOP
      execute(op, at);
    }
    if (stack_.size() != 1 || !marks_.empty()) fail("the pickle does not end with exactly one value");
    program_.root = stack_.back();
    if (end) *end = position_;
    return std::move(program_);
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(source_ + ": not a checkpoint prism can read: " + what + " (at byte " + std::to_string(position_) +
                " of its pickle)");
  }

  // --- reading the opcode stream, every read bounds-checked ---
  uint8_t byte() {
    if (position_ >= size_) fail("the pickle ends early");
    return data_[position_++];
  }
  const uint8_t* take(uint64_t count) {
    if (count > size_ - position_) fail("the pickle ends early");
    const uint8_t* start = data_ + position_;
    position_ += count;
    return start;
  }
  uint64_t unsigned_le(int bytes) {
    const uint8_t* p = take(bytes);
    uint64_t value = 0;
    for (int i = bytes - 1; i >= 0; --i) value = value << 8 | p[i];
    return value;
  }
  std::string line() {
    const size_t start = position_;
    while (position_ < size_ && data_[position_] != '\n') ++position_;
    if (position_ >= size_) fail("the pickle ends early");
    return std::string(reinterpret_cast<const char*>(data_ + start), position_++ - start);
  }

  // --- values ---
  int add(PickleValue value) {
    if (program_.values.size() >= max_values) fail("too many values");
    program_.values.push_back(std::move(value));
    depth_.push_back(1);
    return static_cast<int>(program_.values.size()) - 1;
  }
  int add_kind(PickleValue::Kind kind) {
    PickleValue value;
    value.kind = kind;
    return add(std::move(value));
  }
  PickleValue& value(int index) { return program_.values[index]; }
  // Records that `child` now sits inside `parent`, refusing nesting deeper than max_depth.
  void nest(int parent, int child) {
    const int depth = std::max(depth_[parent], depth_[child] + 1);
    if (depth > max_depth) fail("values nested more than " + std::to_string(max_depth) + " deep");
    depth_[parent] = depth;
  }

  void push(int index) { stack_.push_back(index); }
  int pop() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("the stack is empty");
    const int index = stack_.back();
    stack_.pop_back();
    return index;
  }
  int& top() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) fail("the stack is empty");
    return stack_.back();
  }
  // The values pushed since the last MARK, which is removed.
  std::vector<int> pop_to_mark() {
    if (marks_.empty()) fail("no MARK to pop to");
    const size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<int> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return items;
  }
  int make_tuple(std::vector<int> items) {
    const int tuple = add_kind(PickleValue::Kind::tuple);
    for (int item : items) nest(tuple, item);
    value(tuple).items = std::move(items);
    return tuple;
  }
  void append(int list, const std::vector<int>& items) {
    if (value(list).kind != PickleValue::Kind::list) fail("APPEND to something that is not a list");
    for (int item : items) {
      nest(list, item);
      value(list).items.push_back(item);
    }
  }
  void set_items(int dict, const std::vector<int>& items) {
    if (value(dict).kind != PickleValue::Kind::dict) fail("SETITEM on something that is not a dict");
    if (items.size() % 2 != 0) fail("SETITEMS with a key and no value");
    for (size_t i = 0; i < items.size(); i += 2) {
      nest(dict, items[i]);
      nest(dict, items[i + 1]);
      value(dict).entries.emplace_back(items[i], items[i + 1]);
    }
  }
  int integer_of(int index, const char* what) {
    if (value(index).kind != PickleValue::Kind::integer) fail(std::string(what) + " is not an integer");
    return static_cast<int>(value(index).integer);
  }
  int64_t integer64_of(int index, const char* what) {
    if (value(index).kind != PickleValue::Kind::integer) fail(std::string(what) + " is not an integer");
    return value(index).integer;
  }
  Shape integers_of(int index, const char* what) {
    const PickleValue& tuple = value(index);
    if (tuple.kind != PickleValue::Kind::tuple) fail(std::string(what) + " is not a tuple");
    if (tuple.items.size() > static_cast<size_t>(max_dims)) fail(std::string(what) + " has too many dimensions");
    Shape values;
    for (int item : tuple.items) values.push_back(integer64_of(item, what));
    return values;
  }

  // --- globals and what calling them means ---
  int global(const std::string& module, const std::string& name) {
    const std::string full = module + "." + name;
    const bool allowed = full == "collections.OrderedDict" || full == "torch._utils._rebuild_tensor_v2" ||
                         full == "torch._utils._rebuild_parameter" ||
                         (module == "torch" && storage_types().count(name) > 0);
    if (!allowed) throw Error(source_ + ": " + refusal(full));
    const int index = add_kind(PickleValue::Kind::global);
    value(index).text = full;
    return index;
  }

  int reduce(int callable, int arguments) {
    if (value(callable).kind != PickleValue::Kind::global) fail("REDUCE calls something that is not a global");
    if (value(arguments).kind != PickleValue::Kind::tuple) fail("REDUCE arguments are not a tuple");
    const std::string name = value(callable).text;
    const std::vector<int> args = value(arguments).items;
    if (name == "collections.OrderedDict") {
      if (!args.empty()) fail("OrderedDict with arguments");
      return add_kind(PickleValue::Kind::dict);
    }
    if (name == "torch._utils._rebuild_parameter") {
      if (args.size() != 3 || value(args[0]).kind != PickleValue::Kind::tensor) fail("a malformed parameter");
      return args[0];
    }
    if (name == "torch._utils._rebuild_tensor_v2") {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      if (args.size() < 6 || args.size() > 7) fail("_rebuild_tensor_v2 with " + std::to_string(args.size()) + " arguments");
      if (value(args[0]).kind != PickleValue::Kind::integer || value(args[0]).text != "storage") {
        fail("a tensor whose storage is not a persistent storage");
      }
      PickledTensor tensor;
      tensor.storage = static_cast<int>(value(args[0]).integer);
      tensor.offset = integer64_of(args[1], "a storage offset");
      tensor.sizes = integers_of(args[2], "a tensor size");
      tensor.strides = integers_of(args[3], "a tensor stride");
      if (tensor.sizes.size() != tensor.strides.size()) fail("a tensor whose size and stride differ in length");
      const int index = add_kind(PickleValue::Kind::tensor);
      value(index).tensor = static_cast<int>(program_.tensors.size());
      program_.tensors.push_back(std::move(tensor));
      return index;
    }
    fail("calling " + name);  // a storage type is only ever named, never called
  }

  // ('storage', torch.XStorage, key, location, numel[, view_metadata]): a storage; represented as
  // an integer value holding its index, tagged "storage", so only _rebuild_tensor_v2 can use it.
  int persistent(int id) {
    const PickleValue& tuple = value(id);
    if (tuple.kind != PickleValue::Kind::tuple || tuple.items.size() < 5 || tuple.items.size() > 6) {
      fail("a persistent id that is not a storage");
    }
    const PickleValue& tag = value(tuple.items[0]);
    const PickleValue& type = value(tuple.items[1]);
    const PickleValue& key = value(tuple.items[2]);
    if (tag.kind != PickleValue::Kind::string || tag.text != "storage") fail("a persistent id that is not a storage");
    if (type.kind != PickleValue::Kind::global || type.text.rfind("torch.", 0) != 0 ||
        storage_types().count(type.text.substr(6)) == 0) {
      fail("a storage of unknown type");
    }
    if (key.kind != PickleValue::Kind::string) fail("a storage key that is not a string");
    if (tuple.items.size() == 6 && value(tuple.items[5]).kind != PickleValue::Kind::none) {
      fail("a storage view (legacy view_metadata), which prism does not read");
    }
    PickledStorage storage{type.text.substr(6), key.text, integer64_of(tuple.items[4], "a storage size")};
    if (storage.numel < 0 || storage.numel > (int64_t{1} << 48)) fail("a storage of impossible size");
    const int index = add_kind(PickleValue::Kind::integer);
    value(index).integer = static_cast<int64_t>(program_.storages.size());
    value(index).text = "storage";
    program_.storages.push_back(std::move(storage));
    return index;
  }

  int string_value(const uint8_t* bytes, uint64_t length) {
    const int index = add_kind(PickleValue::Kind::string);
    value(index).text.assign(reinterpret_cast<const char*>(bytes), length);
    return index;
  }
  int integer_value(int64_t number) {
    const int index = add_kind(PickleValue::Kind::integer);
    value(index).integer = number;
    return index;
  }
  void memo_put(uint64_t key) {
    if (stack_.empty()) fail("PUT with an empty stack");
    memo_[key] = stack_.back();
  }
  int memo_get(uint64_t key) {
    const auto found = memo_.find(key);
    if (found == memo_.end()) fail("GET of a value never PUT");
    return found->second;
  }

  void execute(uint8_t op, size_t at) {
    using Kind = PickleValue::Kind;
    switch (op) {
      case 0x80: {  // PROTO
        const uint8_t protocol = byte();
        if (protocol < 2 || protocol > 5) fail("pickle protocol " + std::to_string(protocol));
        return;
      }
      case 0x95: take(8); return;  // FRAME: a length hint
      case '(': marks_.push_back(stack_.size()); return;  // MARK
      case '}': push(add_kind(Kind::dict)); return;       // EMPTY_DICT
      case ']': push(add_kind(Kind::list)); return;       // EMPTY_LIST
      case ')': push(make_tuple({})); return;             // EMPTY_TUPLE
      case 't': push(make_tuple(pop_to_mark())); return;  // TUPLE
      case 0x85: {                                        // TUPLE1
        const int a = pop();
        push(make_tuple({a}));
        return;
      }
      case 0x86: {  // TUPLE2
        const int b = pop(), a = pop();
        push(make_tuple({a, b}));
        return;
      }
      case 0x87: {  // TUPLE3
        const int c = pop(), b = pop(), a = pop();
        push(make_tuple({a, b, c}));
        return;
      }
      case 'l': {  // LIST
        const std::vector<int> items = pop_to_mark();
        const int list = add_kind(Kind::list);
        append(list, items);
        push(list);
        return;
      }
      case 'd': {  // DICT
        const std::vector<int> items = pop_to_mark();
        const int dict = add_kind(Kind::dict);
        set_items(dict, items);
        push(dict);
        return;
      }
      case 'a': {  // APPEND
        const int item = pop();
        append(top(), {item});
        return;
      }
      case 'e': {  // APPENDS
        const std::vector<int> items = pop_to_mark();
        append(top(), items);
        return;
      }
      case 's': {  // SETITEM
        const int v = pop(), k = pop();
        set_items(top(), {k, v});
        return;
      }
      case 'u': {  // SETITEMS
        const std::vector<int> items = pop_to_mark();
        set_items(top(), items);
        return;
      }
      case 'N': push(add_kind(Kind::none)); return;  // NONE
      case 0x88:                                      // NEWTRUE
      case 0x89: {                                    // NEWFALSE
        const int index = add_kind(Kind::boolean);
        value(index).boolean = op == 0x88;
        push(index);
        return;
      }
      case 'J': push(integer_value(static_cast<int32_t>(unsigned_le(4)))); return;  // BININT
      case 'K': push(integer_value(byte())); return;                                 // BININT1
      case 'M': push(integer_value(static_cast<int64_t>(unsigned_le(2)))); return;  // BININT2
      case 0x8a: {                                                                   // LONG1
        const uint8_t length = byte();
        const uint8_t* bytes = take(length);
        if (length <= 8) {
          uint64_t bits = 0;
          for (int i = length - 1; i >= 0; --i) bits = bits << 8 | bytes[i];
          if (length > 0 && length < 8 && (bytes[length - 1] & 0x80)) bits |= ~uint64_t{0} << (8 * length);  // sign
          push(integer_value(static_cast<int64_t>(bits)));
        } else {  // only a legacy checkpoint's magic number is this large
          const int index = add_kind(Kind::big_integer);
          value(index).text.assign(reinterpret_cast<const char*>(bytes), length);
          push(index);
        }
        return;
      }
      case 'G': {  // BINFLOAT: big-endian double
        const uint8_t* p = take(8);
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = bits << 8 | p[i];
        const int index = add_kind(Kind::floating);
        std::memcpy(&value(index).floating, &bits, sizeof(double));
        push(index);
        return;
      }
      case 'X': {  // BINUNICODE
        const uint64_t length = unsigned_le(4);
        push(string_value(take(length), length));
        return;
      }
      case 0x8c: {  // SHORT_BINUNICODE
        const uint64_t length = byte();
        push(string_value(take(length), length));
        return;
      }
      case 0x8d:  // BINUNICODE8
      case 0x8e: {  // BINBYTES8
        const uint64_t length = unsigned_le(8);
        push(string_value(take(length), length));
        return;
      }
      case 'T':    // BINSTRING
      case 'B': {  // BINBYTES
        const uint64_t length = unsigned_le(4);
        push(string_value(take(length), length));
        return;
      }
      case 'U':    // SHORT_BINSTRING
      case 'C': {  // SHORT_BINBYTES
        const uint64_t length = byte();
        push(string_value(take(length), length));
        return;
      }
      case 'q': memo_put(byte()); return;          // BINPUT
      case 'r': memo_put(unsigned_le(4)); return;  // LONG_BINPUT
      case 0x94: memo_put(memo_.size()); return;   // MEMOIZE
      case 'h': push(memo_get(byte())); return;    // BINGET
      case 'j': push(memo_get(unsigned_le(4))); return;  // LONG_BINGET
      case 'c': {                                  // GLOBAL
        const std::string module = line();
        const std::string name = line();
        push(global(module, name));
        return;
      }
      case 0x93: {  // STACK_GLOBAL
        const int name = pop(), module = pop();
        if (value(name).kind != Kind::string || value(module).kind != Kind::string) fail("STACK_GLOBAL of non-strings");
        push(global(value(module).text, value(name).text));
        return;
      }
      case 'R': {  // REDUCE
        const int arguments = pop(), callable = pop();
        push(reduce(callable, arguments));
        return;
      }
      case 'b': {  // BUILD: an OrderedDict's state (its _metadata) is of no use here
        pop();
        if (value(top()).kind != Kind::dict) fail("BUILD on something that is not a dict");
        return;
      }
      case 'Q': push(persistent(pop())); return;  // BINPERSID
      case '0': pop(); return;                    // POP
      case '1': pop_to_mark(); return;            // POP_MARK
      case '2': push(top()); return;              // DUP
      default: {
        char code[8];
        std::snprintf(code, sizeof(code), "0x%02x", op);
        position_ = at;
        fail(std::string("the pickle opcode ") + code + ", which a state_dict does not use");
      }
    }
  }

  const uint8_t* data_;
  size_t size_;
  std::string source_;
  size_t position_ = 0;
  PickleProgram program_;
  std::vector<int> depth_;  // per value: how deep its contents nest
  std::vector<int> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, int> memo_;
};

}  // namespace

int PickleProgram::find(int dict, const std::string& key) const {
  for (const auto& [k, v] : at(dict).entries) {
    if (at(k).kind == PickleValue::Kind::string && at(k).text == key) return v;
  }
  return -1;
}

PickleProgram unpickle(const uint8_t* data, size_t size, const std::string& source, size_t* end) {
  return Machine(data, size, source).run(end);
}

int storage_element_bytes(const std::string& type) {
  static const std::map<std::string, int> bytes = {
      {"FloatStorage", 4}, {"HalfStorage", 2}, {"BFloat16Storage", 2}, {"DoubleStorage", 8}, {"LongStorage", 8},
      {"IntStorage", 4},   {"ShortStorage", 2}, {"CharStorage", 1},    {"ByteStorage", 1},   {"BoolStorage", 1}};
  const auto found = bytes.find(type);
  return found == bytes.end() ? 0 : found->second;
}

}  // namespace prism
