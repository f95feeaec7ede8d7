"""ThreadPoolExecutor.map over pure-Python work (a small string-processing task)."""

from concurrent.futures import ThreadPoolExecutor


def tokenize(text):
    words = {}
    for word in text.split():
        word = word.strip(".,").lower()
        words[word] = words.get(word, 0) + 1
    return words


def main():
    texts = [" ".join(f"Word{i % 50}, token{(i * 7) % 31}." for i in range(k, k + 200))
             for k in range(2000)]
    merged = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        for counts in pool.map(tokenize, texts):
            for w, c in counts.items():
                merged[w] = merged.get(w, 0) + c
    return merged


if __name__ == "__main__":
    main()
