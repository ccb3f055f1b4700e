"""A small list of common English words: the dictionary a fluency check reads generated answers against.

Shipped as code so the check runs offline and gives the same verdict everywhere. It holds the function
words, the verbs and nouns an answer about a person or a place is made of, and what a model says when it
declines ("I don't know", "not sure", "no information"). Together with the words of the data set's own
questions and answers it separates "answers in English" from "token soup"; it is not a spelling checker.
"""

from __future__ import annotations

_WORDS = """
a about above across after again against ago all almost alone along already also although always am among an and
another answer answers any anyone anything are area around as ask asked at away back be became because become been
before began behind being believe below best better between big book born both brother but by call called came can
cannot capital case cause certain child children city clear close colour color come comes common could country
dad daughter day days did die died different do does dog doing done don't down during each early either else end
enough even ever every everyone everything example eye face fact facts fall family famous far father favorite
favourite feel few find first five for form found four free friend friends from full gave get gets give given go
goes going gone good got great group had half hand happy has have having he head hear heard help her here hers
herself high him himself his home house how however i i'm if important in information instead instrument into is
isn't it it's its itself job just keep kind knew know known knows land large last later least left less let life
like likes line little live lived lives living long look love loves made main make makes man many may me mean
member might mind more most mother move much music must my myself name named names near need never new next nice
night no none nor not nothing now number of off often old on once one only open or other others our out over own
part people person pet place play played player plays point possible probably profession put question questions
rather real really right said same say says second see seems seen several she should show side since small so some
someone something sometimes son soon sorry start still such sure take taken tell than that that's the their them
themselves then there these they thing things think third this those though three through time to today together
told too took town true two under unknown until up upon us use used very want wanted was wasn't water way we well
went were what when where whether which while who whole whom whose why will wish with within without woman word
words work worked works world would year years yes yet you your
"""

ENGLISH_WORDS: frozenset[str] = frozenset(_WORDS.split())
