from attnrank.codehash import source_hash

A = '''
def f(x):
    """Doc."""
    # a comment
    return x + 1
'''
B = '''
def f(x):
    """Other doc."""
    return x + 1  # another comment
'''
C = '''
def f(x):
    return x + 2
'''


def test_comments_and_docstrings_do_not_count():
    assert source_hash(A) == source_hash(B)


def test_logic_counts():
    assert source_hash(A) != source_hash(C)


def test_function_closure_follows_own_module_helpers():
    from attnrank import methods
    from attnrank.codehash import function_closure_hash

    h_icr = function_closure_hash(methods.METHODS["icr"])
    h_qr = function_closure_hash(methods.METHODS["qrhead"])
    assert h_icr != h_qr
    assert h_icr == function_closure_hash(methods.METHODS["icr"])  # stable
