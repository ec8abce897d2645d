// TOML to jansson through tomlplusplus. Everything C++ stays in this file:
// every exported function catches every exception, so none reaches C.
#include "toml_json.h"

#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <toml++/toml.h>

extern "C" {
#include "util.h"
}

struct toml_positions {
	toml::table root; // kept to answer lookups: no string per node
};

namespace {

// A value that TOML allows but JSON cannot carry, or a document too deep.
struct convert_error {
	std::string message;
	toml::source_position where;
};

// More dotted-key separators than this are refused before parsing: the
// parser recurses once per level and a few megabytes of "a.a.a..." would
// exhaust the stack.
constexpr unsigned MAX_KEY_DOTS = 1024;
// Nesting of tables and arrays that convert() follows.
constexpr unsigned MAX_DEPTH = 512;

void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	str_one_line(err); // whatever the parser quotes from the document
}

bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

bool is_bare_key(std::string_view k)
{
	if (k.empty())
		return false;
	for (char c : k)
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' ||
		      c == '-'))
			return false;
	return true;
}

void append_key(std::string &path, std::string_view key)
{
	if (!path.empty())
		path += '.';
	if (is_bare_key(key)) {
		path += key;
		return;
	}
	path += '"';
	for (unsigned char c : key) {
		if (c == '"' || c == '\\') {
			path += '\\';
			path += (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			char esc[8];
			snprintf(esc, sizeof esc, "\\u%04x", c);
			path += esc;
		} else {
			path += (char)c;
		}
	}
	path += '"';
}

void append_index(std::string &path, size_t index)
{
	path += '[';
	path += std::to_string(index);
	path += ']';
}

// A character that ends a bare token in prescan(). Not strchr(): it finds
// the terminating NUL, so a NUL byte would end every token at length 0 and
// the scan would never advance.
bool ends_token(char c)
{
	switch (c) {
	case ' ': case '\t': case '\r': case '\n': case ',': case '[': case ']': case '{':
	case '}': case '=': case '#': case '"': case '\'':
		return true;
	default:
		return false;
	}
}

// Upper bound on the depth dotted keys can build: counts '.' outside
// strings and comments, except the one dot of a number or time ("1.5",
// "07:32:00.25"). A digit key chain "1.2 . 3.4" hides at most two levels
// per counted dot, so depth stays below 3 * MAX_KEY_DOTS + the parser's own
// limit on nested values. Only a valid document reaches the recursive part
// of the parser, so the scan need only be exact on valid TOML.
void prescan(std::string_view doc)
{
	unsigned dots = 0;
	uint32_t line = 1, col = 1;
	size_t i = 0, n = doc.size();
	auto advance = [&](size_t k) {
		for (size_t j = 0; j < k && i < n; j++, i++) {
			if (doc[i] == '\n') {
				line++;
				col = 1;
			} else {
				col++;
			}
		}
	};
	auto run_of = [&](char q) {
		size_t k = 0;
		while (i + k < n && doc[i + k] == q)
			k++;
		return k;
	};
	while (i < n) {
		char c = doc[i];
		if (c == '#') {
			while (i < n && doc[i] != '\n')
				advance(1);
		} else if (c == '"' || c == '\'') {
			bool basic = c == '"';
			if (run_of(c) >= 3) { // multi-line: ends at a run of 3 to 5 quotes
				advance(3);
				while (i < n) {
					if (basic && doc[i] == '\\') {
						advance(2);
					} else if (doc[i] == c && run_of(c) >= 3) {
						advance(run_of(c));
						break;
					} else {
						advance(1);
					}
				}
			} else {
				advance(1);
				while (i < n && doc[i] != c && doc[i] != '\n')
					advance(basic && doc[i] == '\\' ? 2 : 1);
				advance(1);
			}
		} else if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',' || c == '[' ||
			   c == ']' || c == '{' || c == '}' || c == '=') {
			advance(1);
		} else {
			// a token: a bare key, a number, a date, a boolean, or dots
			size_t end = i;
			unsigned token_dots = 0;
			bool numeric = false;
			while (end < n && !ends_token(doc[end])) {
				if (doc[end] == '.') {
					token_dots++;
					numeric = end > i && is_digit(doc[end - 1]) && end + 1 < n &&
						  is_digit(doc[end + 1]);
				}
				end++;
			}
			if (!(token_dots == 1 && numeric))
				dots += token_dots;
			if (dots > MAX_KEY_DOTS)
				throw convert_error{ "too many dotted keys (more than " +
							     std::to_string(MAX_KEY_DOTS) +
							     " '.' separators in the document)",
						     { line, col } };
			advance(end - i);
		}
	}
}

// Where convert() is, to name a value in an error without building a path
// for every node.
struct crumb {
	const crumb *up;
	std::string_view key;
	size_t index;
	bool is_index;
};

std::string crumb_path(const crumb *c)
{
	std::vector<const crumb *> chain;
	for (; c; c = c->up)
		chain.push_back(c);
	std::string path;
	for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
		if ((*it)->is_index)
			append_index(path, (*it)->index);
		else
			append_key(path, (*it)->key);
	}
	return path;
}

json_t *checked(json_t *v)
{
	if (!v)
		throw std::bad_alloc();
	return v;
}

template <typename T> std::string to_text(const T &v)
{
	std::ostringstream ss;
	ss << v;
	return ss.str();
}

json_t *convert(const toml::node &node, const crumb *at, unsigned depth);

json_t *convert_table(const toml::table &table, const crumb *at, unsigned depth)
{
	json_t *obj = checked(json_object());
	try {
		for (auto &&[key, value] : table) {
			std::string_view k = key.str();
			crumb here{ at, k, 0, false };
			if (k.find('\0') != std::string_view::npos)
				throw convert_error{ "key " + crumb_path(&here) +
							     " contains a NUL character",
						     key.source().begin };
			json_t *v = convert(value, &here, depth + 1);
			if (json_object_set_new(obj, std::string(k).c_str(), v) != 0)
				throw std::bad_alloc();
		}
	} catch (...) {
		json_decref(obj);
		throw;
	}
	return obj;
}

json_t *convert_array(const toml::array &array, const crumb *at, unsigned depth)
{
	json_t *arr = checked(json_array());
	try {
		size_t i = 0;
		for (const toml::node &elem : array) {
			crumb here{ at, {}, i++, true };
			if (json_array_append_new(arr, convert(elem, &here, depth + 1)) != 0)
				throw std::bad_alloc();
		}
	} catch (...) {
		json_decref(arr);
		throw;
	}
	return arr;
}

json_t *convert(const toml::node &node, const crumb *at, unsigned depth)
{
	if (depth > MAX_DEPTH)
		throw convert_error{ "tables and arrays nested deeper than " +
					     std::to_string(MAX_DEPTH) + " levels",
				     node.source().begin };
	switch (node.type()) {
	case toml::node_type::table:
		return convert_table(*node.as_table(), at, depth);
	case toml::node_type::array:
		return convert_array(*node.as_array(), at, depth);
	case toml::node_type::string: {
		const std::string &s = node.as_string()->get();
		json_t *v = json_stringn(s.data(), s.size());
		if (!v)
			throw convert_error{ crumb_path(at) + ": string is not valid UTF-8",
					     node.source().begin };
		return v;
	}
	case toml::node_type::integer:
		return checked(json_integer((json_int_t)node.as_integer()->get()));
	case toml::node_type::floating_point: {
		double d = node.as_floating_point()->get();
		if (!std::isfinite(d))
			throw convert_error{ crumb_path(at) +
						     ": nan and inf are not supported, expected a finite number",
					     node.source().begin };
		return checked(json_real(d));
	}
	case toml::node_type::boolean:
		return checked(json_boolean(node.as_boolean()->get()));
	case toml::node_type::date:
		return checked(json_string(to_text(node.as_date()->get()).c_str()));
	case toml::node_type::time:
		return checked(json_string(to_text(node.as_time()->get()).c_str()));
	case toml::node_type::date_time:
		return checked(json_string(to_text(node.as_date_time()->get()).c_str()));
	case toml::node_type::none:
		break;
	}
	throw convert_error{ crumb_path(at) + ": unsupported TOML value", node.source().begin };
}

json_t *parse_doc(std::string_view doc, const char *name, toml_positions **positions, char *err,
		  size_t errlen)
{
	toml_positions *pos = nullptr;
	try {
		prescan(doc);
		pos = new toml_positions{ toml::parse(doc, std::string_view(name)) };
		json_t *obj = convert_table(pos->root, nullptr, 0);
		if (positions)
			*positions = pos;
		else
			delete pos;
		return obj;
	} catch (const toml::parse_error &e) {
		const toml::source_position &at = e.source().begin;
		set_err(err, errlen, "%s:%u:%u: %s", name, (unsigned)at.line, (unsigned)at.column,
			std::string(e.description()).c_str());
	} catch (const convert_error &e) {
		set_err(err, errlen, "%s:%u:%u: %s", name, (unsigned)e.where.line,
			(unsigned)e.where.column, e.message.c_str());
	} catch (const std::bad_alloc &) {
		set_err(err, errlen, "%s: out of memory", name);
	} catch (const std::exception &e) {
		set_err(err, errlen, "%s: %s", name, e.what());
	} catch (...) {
		set_err(err, errlen, "%s: unexpected error while parsing TOML", name);
	}
	delete pos;
	return nullptr;
}

// Follows a path (see toml_json.h) through the document; the region of the
// key (or of the array element) it names, or nullptr.
const toml::source_region *resolve(const toml::table &root, std::string_view path)
{
	const toml::node *node = &root;
	const toml::source_region *region = nullptr;
	size_t i = 0, n = path.size();
	bool first = true;
	while (i < n) {
		if (path[i] == '[') {
			size_t close = path.find(']', i);
			if (close == std::string_view::npos || close == i + 1)
				return nullptr;
			size_t index = 0;
			for (size_t j = i + 1; j < close; j++) {
				if (!is_digit(path[j]) || index > (SIZE_MAX - 9) / 10)
					return nullptr;
				index = index * 10 + (size_t)(path[j] - '0');
			}
			const toml::array *arr = node->as_array();
			if (!arr || index >= arr->size())
				return nullptr;
			node = arr->get(index);
			region = &node->source();
			i = close + 1;
			first = false;
			continue;
		}
		if (!first) {
			if (path[i] != '.')
				return nullptr;
			i++;
		}
		first = false;
		std::string key;
		if (i < n && path[i] == '"') {
			for (i++; i < n && path[i] != '"'; i++) {
				if (path[i] != '\\') {
					key += path[i];
					continue;
				}
				if (++i >= n)
					return nullptr;
				if (path[i] == 'u') {
					if (i + 4 >= n)
						return nullptr;
					key += (char)strtoul(std::string(path.substr(i + 1, 4)).c_str(),
							     nullptr, 16);
					i += 4;
				} else {
					key += path[i];
				}
			}
			if (i >= n)
				return nullptr;
			i++; // closing quote
		} else {
			size_t start = i;
			while (i < n && path[i] != '.' && path[i] != '[')
				i++;
			key.assign(path.substr(start, i - start));
			if (!is_bare_key(key))
				return nullptr;
		}
		const toml::table *tbl = node->as_table();
		if (!tbl)
			return nullptr;
		auto it = tbl->find(key);
		if (it == tbl->end())
			return nullptr;
		region = &it->first.source();
		node = &it->second;
	}
	return region;
}

char *dup_string(const std::string &s)
{
	return xstrndup(s.data(), s.size());
}

} // namespace

extern "C" json_t *toml_json_parse_string(const char *text, size_t len, const char *name,
					  toml_positions **positions, char *err, size_t errlen)
{
	if (positions)
		*positions = nullptr;
	if (!name)
		name = "<string>";
	if (!text) {
		text = "";
		len = 0;
	}
	return parse_doc(std::string_view(text, len), name, positions, err, errlen);
}

extern "C" json_t *toml_json_parse_file(const char *path, toml_positions **positions, char *err,
					size_t errlen)
{
	if (positions)
		*positions = nullptr;
	// O_NONBLOCK: a FIFO (or a device) must not block the open; it is
	// refused below as not a regular file.
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return nullptr;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		set_err(err, errlen, "%s: not a regular file", path);
		close(fd);
		return nullptr;
	}
	if ((unsigned long long)st.st_size > TOML_JSON_MAX_FILE_BYTES) {
		set_err(err, errlen, "%s: too large (%lld bytes, at most %u)", path,
			(long long)st.st_size, TOML_JSON_MAX_FILE_BYTES);
		close(fd);
		return nullptr;
	}
	// Read up to one byte more than the limit: the file may grow meanwhile.
	char *data = (char *)xmalloc(TOML_JSON_MAX_FILE_BYTES + 1);
	size_t n = 0;
	int saved = 0;
	while (n < TOML_JSON_MAX_FILE_BYTES + 1) {
		ssize_t r = read(fd, data + n, TOML_JSON_MAX_FILE_BYTES + 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			saved = errno;
			break;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	json_t *out = nullptr;
	if (saved)
		set_err(err, errlen, "%s: cannot read: %s", path, strerror(saved));
	else if (n > TOML_JSON_MAX_FILE_BYTES)
		set_err(err, errlen, "%s: too large (at most %u bytes)", path, TOML_JSON_MAX_FILE_BYTES);
	else
		out = parse_doc(std::string_view(data, n), path, positions, err, errlen);
	free(data);
	return out;
}

static const toml::source_region *lookup(const toml_positions *pos, const char *path)
{
	if (!pos || !path || !*path)
		return nullptr;
	try {
		return resolve(pos->root, path);
	} catch (...) {
		return nullptr;
	}
}

extern "C" unsigned toml_positions_line(const toml_positions *pos, const char *path)
{
	const toml::source_region *r = lookup(pos, path);
	return r ? (unsigned)r->begin.line : 0;
}

extern "C" unsigned toml_positions_column(const toml_positions *pos, const char *path)
{
	const toml::source_region *r = lookup(pos, path);
	return r ? (unsigned)r->begin.column : 0;
}

extern "C" void toml_positions_free(toml_positions *pos)
{
	delete pos;
}

extern "C" char *toml_path_key(const char *parent, const char *key)
{
	try {
		std::string path = parent ? parent : "";
		append_key(path, key ? key : "");
		return dup_string(path);
	} catch (...) {
		abort(); // only std::bad_alloc can happen: out of memory aborts
	}
}

extern "C" char *toml_path_index(const char *parent, size_t index)
{
	try {
		std::string path = parent ? parent : "";
		append_index(path, index);
		return dup_string(path);
	} catch (...) {
		abort();
	}
}
