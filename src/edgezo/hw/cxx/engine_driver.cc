// The test bench of the ZO engine in CXXRTL: replays a recorded run with no Python per cycle.
//
// Compiled after the design that yosys's `write_cxxrtl` generated (edgezo.hw.engine_cxxrtl
// appends this file to it), so `cxxrtl_design::p_top` is the engine. Ports and the block RAM
// are found by name through CXXRTL's debug items, so nothing here depends on how CXXRTL
// names its C++ members or which signals it keeps as wires.
//
// Usage: engine_driver IN OUT. Every number is little-endian.
//   IN:  header of 10 int32: magic 0x58435a45 ("EZCX"), version 1, steps, queries, groups,
//        rows, lanes, weight bits, m/k/coef field bits packed as m | k << 8 | coef << 16,
//        flags (bit 0: write the streamed rows); then per step: m_u[groups], k_u[groups],
//        numerators[queries], loss words[2 * queries] (all int32).
//   OUT: per step: int64 cycles, int64 streamed rows S, int32 lanes of the S streamed rows
//        (only with flag bit 0), int32 lanes of the memory's `rows` rows after the step.
// The cycle loop is edgezo.hw.engine_cosim._one_step's, cycle for cycle: the cycle counts
// and the streamed rows of both simulators are compared by the tests.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using cxxrtl::debug_item;
using cxxrtl::debug_items;

const int32_t MAGIC = 0x58435a45, VERSION = 1;

[[noreturn]] void fail(const std::string &why) { throw std::runtime_error(why); }

// `width` bits of `chunks` (32-bit words, least significant first) from bit `at`; width <= 32
uint32_t get_bits(const uint32_t *chunks, size_t at, size_t width) {
	uint64_t lo = chunks[at / 32], hi = (at % 32 + width > 32) ? chunks[at / 32 + 1] : 0;
	uint64_t both = (lo | (hi << 32)) >> (at % 32);
	return uint32_t(both & ((uint64_t(1) << width) - 1));
}

void put_bits(uint32_t *chunks, size_t at, size_t width, uint32_t value) {
	for (size_t b = 0; b < width; b++) {
		uint32_t bit = (value >> b) & 1u, &word = chunks[(at + b) / 32];
		word = (word & ~(1u << ((at + b) % 32))) | (bit << ((at + b) % 32));
	}
}

int32_t signed_lane(const uint32_t *chunks, size_t lane, size_t bits) {
	uint32_t raw = get_bits(chunks, lane * bits, bits);
	return (raw >> (bits - 1)) ? int32_t(int64_t(raw) - (int64_t(1) << bits)) : int32_t(raw);
}

const debug_item &item(const debug_items &items, const std::string &name, size_t width) {
	if (items.count(name) != 1)
		fail("the design has no single signal '" + name + "': is it edgezo.hw.engine.Engine?");
	const debug_item &it = items.at(name);
	if (width && it.width != width)
		fail("'" + name + "' is " + std::to_string(it.width) + " bits, expected " +
		     std::to_string(width));
	return it;
}

struct Header {
	int32_t magic, version, steps, queries, groups, rows, lanes, bits, fields, flags;
};

struct Bench {
	cxxrtl_design::p_top top;
	debug_items items;
	Header h;
	uint32_t *clk, *start, *upd_m, *upd_k, *coef, *loss, *loss_valid, *coef_valid;
	const uint32_t *ready, *busy, *w_valid, *w_out, *loss_ready, *coef_ready;
	const debug_item *memory;
	size_t m_bits, k_bits, c_bits;

	explicit Bench(const Header &header) : h(header) {
		top.debug_info(items);
		m_bits = h.fields & 0xff, k_bits = (h.fields >> 8) & 0xff, c_bits = (h.fields >> 16) & 0xff;
		size_t word = size_t(h.lanes) * size_t(h.bits);
		auto in = [&](const char *name, size_t width) { return item(items, name, width).next; };
		auto out = [&](const char *name, size_t width) { return item(items, name, width).curr; };
		clk = in("clk", 1), start = in("start", 1), loss = in("loss", 32);
		upd_m = in("upd_m", h.groups * m_bits), upd_k = in("upd_k", h.groups * k_bits);
		coef = in("coef", h.queries * c_bits), coef_valid = in("coef_valid", 1);
		loss_valid = in("loss_valid", 1);
		ready = out("ready", 1), busy = out("busy", 1), w_valid = out("w_valid", 1);
		w_out = out("w_out", word), loss_ready = out("loss_ready", 1);
		coef_ready = out("coef_ready", 1);
		memory = &item(items, "memory", word);
		if (memory->depth != size_t(h.rows))
			fail("the block RAM has " + std::to_string(memory->depth) + " rows, the run " +
			     std::to_string(h.rows));
		top.step();  // settle the outputs of the reset state
	}

	// One rising clock edge with the inputs as set, then the falling edge: a converged
	// step() commits the flip-flops without evaluating again, so the outputs computed from
	// their new values appear only in the next eval, the falling edge's.
	void tick() {
		*clk = 1;
		top.step();
		*clk = 0;
		top.step();
	}

	// one recorded step: the cycle loop of engine_cosim._one_step
	void step(const int32_t *m_u, const int32_t *k_u, const int32_t *n, const int32_t *losses,
	          FILE *out) {
		for (int32_t g = 0; g < h.groups; g++) {
			put_bits(upd_m, g * m_bits, m_bits, uint32_t(m_u[g]));
			put_bits(upd_k, g * k_bits, k_bits, uint32_t(k_u[g]));
		}
		for (int32_t i = 0; i < h.queries; i++)
			put_bits(coef, i * c_bits, c_bits, uint32_t(n[i]));
		const int64_t limit = 4 * int64_t(2 * h.queries + 1) * (h.rows + 1) + 1000;
		for (int64_t wait = 0; !*ready; wait++) {
			if (wait > limit) fail("the engine never became ready");
			tick();
		}
		*start = 1;
		tick();
		*start = 0;
		int64_t cycles = 1;
		int32_t used = 0;
		std::vector<int32_t> streamed;
		while (*busy) {
			if (*w_valid && (h.flags & 1))
				for (int32_t j = 0; j < h.lanes; j++)
					streamed.push_back(signed_lane(w_out, j, h.bits));
			*loss_valid = *loss_ready;
			if (*loss_ready) {
				if (used == 2 * h.queries) fail("the engine asked for more losses than the step has");
				*loss = uint32_t(losses[used++]);
			}
			*coef_valid = *coef_ready;
			tick();
			if (++cycles > limit) fail("the step did not end (the engine stayed busy)");
		}
		*loss_valid = 0;
		int64_t rows = int64_t(streamed.size()) / h.lanes;
		std::fwrite(&cycles, sizeof cycles, 1, out);
		std::fwrite(&rows, sizeof rows, 1, out);
		std::fwrite(streamed.data(), sizeof(int32_t), streamed.size(), out);
		std::vector<int32_t> mem(size_t(h.rows) * h.lanes);
		size_t chunks = (memory->width + 31) / 32;
		for (int32_t r = 0; r < h.rows; r++)
			for (int32_t j = 0; j < h.lanes; j++)
				mem[size_t(r) * h.lanes + j] = signed_lane(memory->curr + r * chunks, j, h.bits);
		std::fwrite(mem.data(), sizeof(int32_t), mem.size(), out);
	}
};

std::vector<int32_t> read_words(FILE *in, size_t n) {
	std::vector<int32_t> v(n);
	if (std::fread(v.data(), sizeof(int32_t), n, in) != n) fail("the input file is truncated");
	return v;
}

void run(const char *in_path, const char *out_path) {
	FILE *in = std::fopen(in_path, "rb");
	if (!in) fail(std::string("cannot open ") + in_path);
	Header h;
	if (std::fread(&h, sizeof h, 1, in) != 1 || h.magic != MAGIC || h.version != VERSION)
		fail("the input is not a version-1 engine run (wrong magic or version)");
	Bench bench(h);
	FILE *out = std::fopen(out_path, "wb");
	if (!out) fail(std::string("cannot write ") + out_path);
	for (int32_t s = 0; s < h.steps; s++) {
		std::vector<int32_t> m_u = read_words(in, h.groups), k_u = read_words(in, h.groups);
		std::vector<int32_t> n = read_words(in, h.queries), losses = read_words(in, 2 * h.queries);
		bench.step(m_u.data(), k_u.data(), n.data(), losses.data(), out);
	}
	std::fclose(in);
	if (std::fclose(out) != 0) fail(std::string("writing ") + out_path + " failed");
}

}  // namespace

int main(int argc, char **argv) {
	if (argc != 3) {
		std::fprintf(stderr, "usage: %s IN OUT\n", argv[0]);
		return 2;
	}
	try {
		run(argv[1], argv[2]);
	} catch (const std::exception &err) {
		std::fprintf(stderr, "engine_driver: %s\n", err.what());
		return 1;
	}
	return 0;
}
