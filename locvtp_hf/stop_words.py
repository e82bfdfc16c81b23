"""Words that clip-word correspondence discovery should not pick: English function words and punctuation.

Discovery matches each clip with the word of its sentence it resembles most. Left free, it settles on words that
occur in every sentence ("the", "in", "to"): they say nothing about *where* in the video the sentence happens, so the
fine-grained terms then align clips with them instead of with the words that name what the clip shows.
[`stop_word_token_ids`] turns this list into the token ids of a tokenizer, for
`LocVTPConfig.discovery_excluded_token_ids`.
"""

import string


STOP_WORDS = frozenset(
    """
    a about above after again against all am an and any are as at be been before being below between both but by can
    did do does doing down during each few for from further had has have having he her here hers herself him himself
    his how i if in into is it its itself just me more most my myself no nor not now of off on once only or other our
    ours ourselves out over own same she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which while who whom why
    will with you your yours yourself yourselves
    """.split()
)


def stop_word_token_ids(tokenizer, words=STOP_WORDS) -> list[int]:
    """
    The ids of the tokens of `tokenizer`'s vocabulary that are one of `words` or punctuation, compared in lower case
    and without a WordPiece `##` or a SentencePiece / byte-level word-start mark. Special tokens are not included (the
    model leaves them out of the words already).

    Args:
        tokenizer: A `transformers` tokenizer.
        words (*optional*): The stop words; defaults to [`STOP_WORDS`].

    Returns:
        `list[int]`, sorted.
    """
    special = set(tokenizer.all_special_ids)
    excluded = []
    for token, index in tokenizer.get_vocab().items():
        text = token.removeprefix("##").lstrip("\u2581\u0120").lower()
        if index not in special and text and (text in words or all(char in string.punctuation for char in text)):
            excluded.append(index)
    return sorted(excluded)


__all__ = ["STOP_WORDS", "stop_word_token_ids"]
