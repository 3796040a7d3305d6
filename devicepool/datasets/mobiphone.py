def load_mobiphone(*a, **k): pass
def split_utterances(*a, **k): pass
