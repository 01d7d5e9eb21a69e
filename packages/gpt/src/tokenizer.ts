// Character-level tokenizer: one id per distinct character of the corpus.
//
// The vocabulary is the corpus's characters sorted by code point, so the same text always gives
// the same ids on every rank and every run. It serialises to JSON so a checkpoint can carry it
// and `zeroring sample` decodes with exactly the vocabulary the model was trained on.

export interface CharTokenizerJSON {
  type: 'char';
  chars: string[];
}

export class CharTokenizer {
  readonly chars: readonly string[];
  private readonly ids: Map<string, number>;

  constructor(chars: readonly string[]) {
    if (chars.length === 0) throw new RangeError('CharTokenizer needs at least one character, got an empty vocabulary');
    this.chars = [...chars];
    this.ids = new Map(this.chars.map((c, i) => [c, i]));
    if (this.ids.size !== this.chars.length) throw new RangeError('CharTokenizer vocabulary has duplicate characters');
  }

  /** Vocabulary of the distinct characters of `text`, sorted by code point. */
  static fromText(text: string): CharTokenizer {
    const distinct = [...new Set(Array.from(text))];
    distinct.sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
    return new CharTokenizer(distinct);
  }

  static fromJSON(json: CharTokenizerJSON): CharTokenizer {
    if (json?.type !== 'char' || !Array.isArray(json.chars)) {
      throw new TypeError(
        `expected a char tokenizer JSON {type:'char', chars:[...]}, got ${JSON.stringify(json)?.slice(0, 80)}`,
      );
    }
    return new CharTokenizer(json.chars);
  }

  get vocabSize(): number {
    return this.chars.length;
  }

  encode(text: string): Int32Array {
    const chars = Array.from(text);
    const out = new Int32Array(chars.length);
    for (let i = 0; i < chars.length; i++) {
      const id = this.ids.get(chars[i]!);
      if (id === undefined) {
        throw new RangeError(
          `character ${JSON.stringify(chars[i])} at position ${i} is ` +
            `not in the vocabulary of ${this.chars.length} characters`,
        );
      }
      out[i] = id;
    }
    return out;
  }

  decode(ids: ArrayLike<number>): string {
    let s = '';
    for (let i = 0; i < ids.length; i++) {
      const c = this.chars[ids[i]!];
      if (c === undefined)
        throw new RangeError(`token id ${ids[i]} is outside the vocabulary [0, ${this.chars.length})`);
      s += c;
    }
    return s;
  }

  toJSON(): CharTokenizerJSON {
    return { type: 'char', chars: [...this.chars] };
  }
}
