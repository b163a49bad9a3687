"""The hand-written programming problems behind ``rewardkit.data.code_tasks``, as plain data.

These are the hand-written problems: their expected values are written out, not computed from the
reference solution, so "every reference passes its tests" checks the reference against the problem
statement. The parameterised families live in ``code_tasks``. Nothing here runs at import time.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

Case = tuple[tuple[Any, ...], Any]
"""A function call's positional arguments and the value it must return."""


@dataclass(frozen=True)
class CodeProblem:
    """One bundled problem: either a function with cases, or a program with stdin/stdout pairs."""

    id: str
    """Unique name; the Task id is ``code/<id>``."""
    family: str
    """Split key: variants of one problem share it (and so share a split)."""
    signature: str
    """``name(arg, ...)`` of the function to write; empty for a stdin/stdout program."""
    description: str
    """What to write, completing the prompt's sentence."""
    reference: str
    """A solution that passes every test."""
    cases: tuple[Case, ...] = ()
    """Function problems: calls and their expected return values (the first few are shown as examples)."""
    io_tests: tuple[tuple[str, str], ...] = ()
    """Program problems: (stdin, expected stdout) pairs (the first is shown as an example)."""

    @property
    def entry_point(self) -> str:
        return self.signature.split("(", 1)[0]


def fixed_problems() -> list[CodeProblem]:
    """The hand-written problems: functions, then stdin/stdout programs."""
    return [*_strings(), *_lists(), *_numbers(), *_programs()]


def source(code: str) -> str:
    """A reference written indented inside a call, as a program (dedented, no leading blank line)."""
    return textwrap.dedent(code).lstrip("\n")


def _fn(signature: str, description: str, reference: str, cases: list[Case]) -> CodeProblem:
    name = signature.split("(", 1)[0]
    return CodeProblem(name, name, signature, description, source(reference), tuple(cases))


# ---- functions ------------------------------------------------------------------------------------
def _strings() -> list[CodeProblem]:
    return [
        _fn(
            "reverse_words(s)",
            "returns the words of `s` (separated by any whitespace) in reverse order, joined by single spaces.",
            """
            def reverse_words(s):
                return " ".join(reversed(s.split()))
            """,
            [(("hello world",), "world hello"), (("  a  b c ",), "c b a"), (("",), ""), (("one",), "one")],
        ),
        _fn(
            "is_palindrome(s)",
            "returns True if `s` reads the same backwards, ignoring case and every character that is "
            "not a letter or a digit, else False.",
            """
            def is_palindrome(s):
                chars = [c.lower() for c in s if c.isalnum()]
                return chars == chars[::-1]
            """,
            [
                (("A man, a plan, a canal: Panama",), True),
                (("race a car",), False),
                (("",), True),
                (("No 'x' in Nixon",), True),
                (("ab",), False),
            ],
        ),
        _fn(
            "count_vowels(s)",
            "returns how many characters of `s` are vowels (a, e, i, o, u, in either case).",
            """
            def count_vowels(s):
                return sum(1 for c in s.lower() if c in "aeiou")
            """,
            [(("Hello World",), 3), (("xyz",), 0), (("AEIOUaeiou",), 10), (("",), 0)],
        ),
        _fn(
            "rle_encode(s)",
            "run-length encodes the string of letters `s`: each run of equal letters becomes the letter "
            "followed by the run's length.",
            """
            def rle_encode(s):
                out = []
                i = 0
                while i < len(s):
                    j = i
                    while j < len(s) and s[j] == s[i]:
                        j += 1
                    out.append(f"{s[i]}{j - i}")
                    i = j
                return "".join(out)
            """,
            [(("aaabccdddd",), "a3b1c2d4"), (("",), ""), (("z",), "z1"), (("aaaaaaaaaaaa",), "a12")],
        ),
        _fn(
            "rle_decode(s)",
            "decodes a run-length encoded string such as 'a3b1c2' (each letter followed by a count of "
            "one or more digits) back into the text, here 'aaabcc'.",
            """
            import re

            def rle_decode(s):
                return "".join(ch * int(n) for ch, n in re.findall(r"([A-Za-z])(\\d+)", s))
            """,
            [(("a3b1c2",), "aaabcc"), (("",), ""), (("x12",), "x" * 12), (("a1b10",), "a" + "b" * 10)],
        ),
        _fn(
            "are_anagrams(a, b)",
            "returns True if the strings `a` and `b` use the same letters the same number of times, "
            "ignoring case and spaces, else False.",
            """
            def are_anagrams(a, b):
                def key(s):
                    return sorted(s.replace(" ", "").lower())
                return key(a) == key(b)
            """,
            [
                (("Listen", "Silent"), True),
                (("Dormitory", "Dirty room"), True),
                (("abc", "abd"), False),
                (("aab", "abb"), False),
                (("", ""), True),
            ],
        ),
        _fn(
            "is_balanced(s)",
            "returns True if the brackets (), [] and {} in `s` are balanced and properly nested, else "
            "False; other characters are ignored.",
            """
            def is_balanced(s):
                pairs = {")": "(", "]": "[", "}": "{"}
                stack = []
                for c in s:
                    if c in "([{":
                        stack.append(c)
                    elif c in pairs:
                        if not stack or stack.pop() != pairs[c]:
                            return False
                return not stack
            """,
            [
                (("([]{})",), True),
                (("([)]",), False),
                (("((",), False),
                (("a(b)c",), True),
                (("",), True),
                (("}{",), False),
            ],
        ),
        _fn(
            "word_counts(text)",
            "returns a dict mapping each word of `text`, lowercased, to the number of times it occurs; "
            "words are separated by whitespace.",
            """
            def word_counts(text):
                counts = {}
                for word in text.lower().split():
                    counts[word] = counts.get(word, 0) + 1
                return counts
            """,
            [
                (("The cat saw the hat",), {"the": 2, "cat": 1, "saw": 1, "hat": 1}),
                (("",), {}),
                (("a A\na",), {"a": 3}),
            ],
        ),
        _fn(
            "capitalize_words(s)",
            "returns `s` with the first character of every space-separated word upper-cased and every "
            "other character (spaces included) left exactly as it is.",
            """
            def capitalize_words(s):
                return " ".join(w[:1].upper() + w[1:] for w in s.split(" "))
            """,
            [
                (("hello world",), "Hello World"),
                (("hello  wORLD",), "Hello  WORLD"),
                (("",), ""),
                ((" x y",), " X Y"),
            ],
        ),
        _fn(
            "longest_common_prefix(words)",
            "returns the longest string that every string in the list `words` starts with ('' for an "
            "empty list).",
            """
            def longest_common_prefix(words):
                if not words:
                    return ""
                prefix = words[0]
                for w in words[1:]:
                    while not w.startswith(prefix):
                        prefix = prefix[:-1]
                return prefix
            """,
            [
                ((["flower", "flow", "flight"],), "fl"),
                ((["dog", "car"],), ""),
                (([],), ""),
                ((["same"],), "same"),
                ((["abcd", "abc", "ab"],), "ab"),
            ],
        ),
        _fn(
            "most_common_char(s)",
            "returns the character that occurs most often in the non-empty string `s`; on a tie, the "
            "one that appears first in `s`.",
            """
            def most_common_char(s):
                best = s[0]
                for c in s:
                    if s.count(c) > s.count(best):
                        best = c
                return best
            """,
            [(("abracadabra",), "a"), (("abcabcbb",), "b"), (("xyyx",), "x"), (("z",), "z")],
        ),
        _fn(
            "roman_to_int(s)",
            "converts the Roman numeral `s` (between I and MMMCMXCIX, subtractive notation such as IV) "
            "to an integer.",
            """
            def roman_to_int(s):
                values = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
                total = 0
                for i, c in enumerate(s):
                    v = values[c]
                    total += -v if i + 1 < len(s) and values[s[i + 1]] > v else v
                return total
            """,
            [(("III",), 3), (("IV",), 4), (("IX",), 9), (("LVIII",), 58), (("MCMXCIV",), 1994)],
        ),
        _fn(
            "int_to_roman(n)",
            "returns the integer `n` (1 <= n <= 3999) as a Roman numeral in standard subtractive "
            "notation (4 is IV, 900 is CM).",
            """
            def int_to_roman(n):
                table = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
                         (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]
                out = ""
                for value, numeral in table:
                    while n >= value:
                        out += numeral
                        n -= value
                return out
            """,
            [((4,), "IV"), ((1994,), "MCMXCIV"), ((1,), "I"), ((58,), "LVIII"), ((3999,), "MMMCMXCIX")],
        ),
    ]


def _lists() -> list[CodeProblem]:
    return [
        _fn(
            "second_largest(nums)",
            "returns the second largest distinct value in the list `nums`, or None if it has fewer "
            "than two distinct values.",
            """
            def second_largest(nums):
                distinct = sorted(set(nums))
                return distinct[-2] if len(distinct) >= 2 else None
            """,
            [
                (([3, 1, 4, 1, 5],), 4),
                (([2, 2],), None),
                (([-1, -2],), -2),
                (([7],), None),
                (([5, 5, 4],), 4),
            ],
        ),
        _fn(
            "running_sum(nums)",
            "returns the list of prefix sums of `nums`: element i is nums[0] + ... + nums[i].",
            """
            def running_sum(nums):
                out, total = [], 0
                for x in nums:
                    total += x
                    out.append(total)
                return out
            """,
            [(([1, 2, 3],), [1, 3, 6]), (([],), []), (([5, -5, 5],), [5, 0, 5])],
        ),
        _fn(
            "flatten(nested)",
            "returns a flat list of the non-list items of the arbitrarily nested list `nested`, in order.",
            """
            def flatten(nested):
                out = []
                for item in nested:
                    if isinstance(item, list):
                        out.extend(flatten(item))
                    else:
                        out.append(item)
                return out
            """,
            [
                (([1, [2, [3, [4]]], 5],), [1, 2, 3, 4, 5]),
                (([],), []),
                (([[], [[]]],), []),
                ((["ab", ["c"]],), ["ab", "c"]),
            ],
        ),
        _fn(
            "dedupe(items)",
            "returns the elements of the list `items` without repeats, each kept at its first "
            "occurrence, in their original order.",
            """
            def dedupe(items):
                seen, out = set(), []
                for x in items:
                    if x not in seen:
                        seen.add(x)
                        out.append(x)
                return out
            """,
            [(([3, 1, 3, 2, 1],), [3, 1, 2]), (([],), []), ((["a", "A", "a"],), ["a", "A"])],
        ),
        _fn(
            "merge_sorted(a, b)",
            "merges the two ascending lists `a` and `b` into one ascending list (keeping duplicates).",
            """
            def merge_sorted(a, b):
                out, i, j = [], 0, 0
                while i < len(a) and j < len(b):
                    if a[i] <= b[j]:
                        out.append(a[i])
                        i += 1
                    else:
                        out.append(b[j])
                        j += 1
                return out + a[i:] + b[j:]
            """,
            [
                (([1, 4, 9], [2, 3, 10]), [1, 2, 3, 4, 9, 10]),
                (([], [1, 2]), [1, 2]),
                (([1, 1], [1]), [1, 1, 1]),
                (([], []), []),
            ],
        ),
        _fn(
            "binary_search(items, target)",
            "returns the index of `target` in the ascending list of distinct integers `items`, or -1 "
            "if it is not there.",
            """
            def binary_search(items, target):
                lo, hi = 0, len(items) - 1
                while lo <= hi:
                    mid = (lo + hi) // 2
                    if items[mid] == target:
                        return mid
                    if items[mid] < target:
                        lo = mid + 1
                    else:
                        hi = mid - 1
                return -1
            """,
            [
                (([1, 3, 5, 7, 9], 7), 3),
                (([1, 3, 5, 7, 9], 4), -1),
                (([], 1), -1),
                (([2], 2), 0),
                ((list(range(0, 100, 2)), 98), 49),
            ],
        ),
        _fn(
            "transpose(matrix)",
            "returns the transpose of the rectangular matrix `matrix` (a list of equal-length row "
            "lists) as a list of lists.",
            """
            def transpose(matrix):
                return [list(col) for col in zip(*matrix)]
            """,
            [(([[1, 2, 3], [4, 5, 6]],), [[1, 4], [2, 5], [3, 6]]), (([],), []), (([[7]],), [[7]])],
        ),
        _fn(
            "max_subarray_sum(nums)",
            "returns the largest sum of a non-empty run of consecutive elements of the non-empty list `nums`.",
            """
            def max_subarray_sum(nums):
                best = current = nums[0]
                for x in nums[1:]:
                    current = max(x, current + x)
                    best = max(best, current)
                return best
            """,
            [(([-2, 1, -3, 4, -1, 2, 1, -5, 4],), 6), (([-3, -1, -2],), -1), (([5],), 5), (([1, 2, 3],), 6)],
        ),
        _fn(
            "two_sum(nums, target)",
            "returns [i, j] with i < j such that nums[i] + nums[j] == target (exactly one such pair exists).",
            """
            def two_sum(nums, target):
                seen = {}
                for j, x in enumerate(nums):
                    if target - x in seen:
                        return [seen[target - x], j]
                    seen[x] = j
            """,
            [
                (([2, 7, 11, 15], 9), [0, 1]),
                (([3, 2, 4], 6), [1, 2]),
                (([3, 3], 6), [0, 1]),
                (([1, 5, -2, 9], 7), [2, 3]),
            ],
        ),
        _fn(
            "find_missing(nums)",
            "returns the one number of 0, 1, ..., n missing from the list `nums` of n distinct numbers.",
            """
            def find_missing(nums):
                n = len(nums)
                return n * (n + 1) // 2 - sum(nums)
            """,
            [(([3, 0, 1],), 2), (([0],), 1), (([1],), 0), (([9, 6, 4, 2, 3, 5, 7, 0, 1],), 8)],
        ),
        _fn(
            "is_sorted(items)",
            "returns True if the list `items` is in non-decreasing order, else False.",
            """
            def is_sorted(items):
                return all(a <= b for a, b in zip(items, items[1:]))
            """,
            [(([1, 2, 2, 3],), True), (([3, 2],), False), (([],), True), (([1, 3, 2],), False)],
        ),
        _fn(
            "interleave(a, b)",
            "returns the elements of the lists `a` and `b` alternately, starting with a[0]; when one "
            "list runs out, the rest of the other follows.",
            """
            def interleave(a, b):
                out = []
                for i in range(max(len(a), len(b))):
                    out.extend(a[i:i + 1])
                    out.extend(b[i:i + 1])
                return out
            """,
            [
                (([1, 2, 3], ["a", "b"]), [1, "a", 2, "b", 3]),
                (([], [1]), [1]),
                (([1], [2, 3, 4]), [1, 2, 3, 4]),
            ],
        ),
        _fn(
            "diagonal_sum(matrix)",
            "returns the sum of the main diagonal of the square matrix `matrix` (0 for an empty one).",
            """
            def diagonal_sum(matrix):
                return sum(matrix[i][i] for i in range(len(matrix)))
            """,
            [(([[1, 2], [3, 4]],), 5), (([[5]],), 5), (([],), 0), (([[1, 2, 3], [4, 5, 6], [7, 8, 9]],), 15)],
        ),
    ]


def _numbers() -> list[CodeProblem]:
    return [
        _fn(
            "fizzbuzz(n)",
            "returns a list of strings for 1..n: 'Fizz' for multiples of 3, 'Buzz' for multiples of 5, "
            "'FizzBuzz' for multiples of both, else the number itself.",
            """
            def fizzbuzz(n):
                out = []
                for i in range(1, n + 1):
                    word = ("Fizz" if i % 3 == 0 else "") + ("Buzz" if i % 5 == 0 else "")
                    out.append(word or str(i))
                return out
            """,
            [
                ((5,), ["1", "2", "Fizz", "4", "Buzz"]),
                ((0,), []),
                ((15,), "1 2 Fizz 4 Buzz Fizz 7 8 Fizz Buzz 11 Fizz 13 14 FizzBuzz".split()),
            ],
        ),
        _fn(
            "gcd(a, b)",
            "returns the greatest common divisor of the non-negative integers `a` and `b` (gcd(0, 0) is 0).",
            """
            def gcd(a, b):
                while b:
                    a, b = b, a % b
                return a
            """,
            [((12, 18), 6), ((0, 5), 5), ((17, 5), 1), ((0, 0), 0), ((100, 75), 25)],
        ),
        _fn(
            "is_prime(n)",
            "returns True if the integer `n` is a prime number, else False.",
            """
            def is_prime(n):
                if n < 2:
                    return False
                d = 2
                while d * d <= n:
                    if n % d == 0:
                        return False
                    d += 1
                return True
            """,
            [
                ((2,), True),
                ((1,), False),
                ((0,), False),
                ((97,), True),
                ((91,), False),
                ((-7,), False),
                ((7919,), True),
            ],
        ),
        _fn(
            "collatz_steps(n)",
            "returns how many steps the Collatz process takes to reach 1 from the positive integer `n` "
            "(a step halves an even number and maps an odd one to 3n + 1).",
            """
            def collatz_steps(n):
                steps = 0
                while n != 1:
                    n = n // 2 if n % 2 == 0 else 3 * n + 1
                    steps += 1
                return steps
            """,
            [((6,), 8), ((1,), 0), ((7,), 16), ((27,), 111)],
        ),
        _fn(
            "fibonacci(n)",
            "returns the n-th Fibonacci number, where fibonacci(0) is 0 and fibonacci(1) is 1.",
            """
            def fibonacci(n):
                a, b = 0, 1
                for _ in range(n):
                    a, b = b, a + b
                return a
            """,
            [((10,), 55), ((0,), 0), ((1,), 1), ((2,), 1), ((50,), 12586269025)],
        ),
        _fn(
            "pascal_row(n)",
            "returns row `n` of Pascal's triangle as a list, counting the top row [1] as row 0.",
            """
            def pascal_row(n):
                row = [1]
                for _ in range(n):
                    row = [1] + [row[i] + row[i + 1] for i in range(len(row) - 1)] + [1]
                return row
            """,
            [((4,), [1, 4, 6, 4, 1]), ((0,), [1]), ((1,), [1, 1]), ((6,), [1, 6, 15, 20, 15, 6, 1])],
        ),
        _fn(
            "sum_odd_squares(nums)",
            "returns the sum of the squares of the odd numbers in the list of integers `nums`.",
            """
            def sum_odd_squares(nums):
                return sum(x * x for x in nums if x % 2 == 1)
            """,
            [(([1, 2, 3],), 10), (([],), 0), (([-3, 4],), 9), (([2, 4],), 0)],
        ),
        _fn(
            "is_leap_year(year)",
            "returns True if `year` is a leap year in the Gregorian calendar (divisible by 4, except "
            "centuries not divisible by 400), else False.",
            """
            def is_leap_year(year):
                return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
            """,
            [((2024,), True), ((1900,), False), ((2000,), True), ((2023,), False), ((2100,), False)],
        ),
    ]


# ---- stdin/stdout programs ----------------------------------------------------------------------------
def _prog(name: str, description: str, reference: str, io_tests: list[tuple[str, str]]) -> CodeProblem:
    return CodeProblem(name, name, "", description, source(reference), io_tests=tuple(io_tests))


def _programs() -> list[CodeProblem]:
    return [
        _prog(
            "sum_two",
            "reads two integers from one line of standard input and prints their sum.",
            """
            a, b = map(int, input().split())
            print(a + b)
            """,
            [("2 3\n", "5\n"), ("-10 4\n", "-6\n"), ("1000000000000 1\n", "1000000000001\n")],
        ),
        _prog(
            "reverse_line",
            "reads one line of text from standard input and prints it reversed.",
            """
            print(input()[::-1])
            """,
            [("hello\n", "olleh\n"), ("ab cd\n", "dc ba\n"), ("A1 b2\n", "2b 1A\n")],
        ),
        _prog(
            "min_max",
            "reads an integer n on the first line and n integers on the second line of standard input, "
            "and prints the smallest and the largest of them separated by a space.",
            """
            input()
            nums = list(map(int, input().split()))
            print(min(nums), max(nums))
            """,
            [("3\n5 -2 9\n", "-2 9\n"), ("1\n7\n", "7 7\n"), ("5\n1 1 1 1 0\n", "0 1\n")],
        ),
        _prog(
            "line_word_count",
            "reads all of standard input and prints the number of lines and the number of "
            "whitespace-separated words in it, separated by a space.",
            """
            import sys

            text = sys.stdin.read()
            print(len(text.splitlines()), len(text.split()))
            """,
            [("one two\nthree\n", "2 3\n"), ("a b c d\n", "1 4\n"), ("x\n\ny z\n", "3 3\n")],
        ),
        _prog(
            "triangle",
            "reads an integer n (1 <= n <= 20) from standard input and prints n lines, where line i "
            "(counting from 1) consists of i `*` characters.",
            """
            n = int(input())
            for i in range(1, n + 1):
                print("*" * i)
            """,
            [("3\n", "*\n**\n***\n"), ("1\n", "*\n"), ("5\n", "*\n**\n***\n****\n*****\n")],
        ),
        _prog(
            "sort_numbers",
            "reads integers separated by spaces from one line of standard input and prints them in "
            "ascending order on one line, separated by single spaces.",
            """
            nums = sorted(map(int, input().split()))
            print(" ".join(map(str, nums)))
            """,
            [("3 1 2\n", "1 2 3\n"), ("10 -5 0 -5\n", "-5 -5 0 10\n"), ("42\n", "42\n")],
        ),
        _prog(
            "nth_prime",
            "reads an integer n (1 <= n <= 2000) from standard input and prints the n-th prime number "
            "(the first prime is 2).",
            """
            n = int(input())
            primes = []
            candidate = 2
            while len(primes) < n:
                if all(candidate % p for p in primes if p * p <= candidate):
                    primes.append(candidate)
                candidate += 1
            print(primes[-1])
            """,
            [("5\n", "11\n"), ("1\n", "2\n"), ("1000\n", "7919\n"), ("2000\n", "17389\n")],
        ),
    ]
