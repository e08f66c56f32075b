"""Word lists and the held-out evaluation templates shared by the task generators and the
organism corpus.

The IOI templates here are the *evaluation* templates: the organism training corpus must never
contain them (it builds its own IOI-style sentences compositionally), so that the shipped
``ioi`` organism is measured on sentence frames it has not seen.

Template slots: ``[A]`` is the indirect object (IO), ``[B]`` the subject (S), ``[PLACE]`` and
``[OBJECT]`` are filled from the lists below. Every template is written in BABA order (the
subject is named first); the ABBA form swaps the first two names.
"""

NAMES = [
    "Mary", "John", "Tom", "James", "Dan", "Sid", "Martin", "Amy", "Alice", "Bob",
    "Sarah", "David", "Michael", "Jessica", "Paul", "Laura", "Mark", "Emma", "Peter", "Anna",
    "George", "Kate", "Steven", "Lisa", "Richard", "Rachel", "Andrew", "Susan", "Daniel", "Helen",
    "Chris", "Linda", "Robert", "Karen", "William", "Nancy", "Thomas", "Betty", "Charles", "Sandra",
    "Joseph", "Ashley", "Kevin", "Donna", "Brian", "Carol", "Edward", "Ruth", "Jason", "Sharon",
    "Ryan", "Michelle", "Gary", "Emily", "Eric", "Amanda", "Frank", "Melissa", "Scott", "Deborah",
    "Adam", "Julie", "Henry", "Grace", "Jack", "Rose", "Sam", "Claire", "Luke", "Jane",
    "Alex", "Kelly", "Ben", "Lucy", "Tim", "Sophie", "Joe", "Hannah", "Max", "Sophia",
    "Leo", "Olivia", "Ian", "Victoria", "Carl", "Diana", "Neil", "Julia", "Roy", "Megan",
]

PLACES = [
    "store", "park", "school", "hospital", "station", "garden", "restaurant", "office",
    "market", "library", "museum", "beach", "house", "church", "river", "lake",
]

OBJECTS = [
    "ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack",
    "book", "bag", "ball", "apple", "letter", "key", "bottle", "cake",
]

# Held-out IOI evaluation templates (BABA order). Never used in organism training.
IOI_TEMPLATES = [
    "Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [B] and [A] had a lot of fun at the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [B] and [A] were working at the [PLACE]. [B] decided to give a [OBJECT] to [A]",
    "Then, [B] and [A] were thinking about going to the [PLACE]. [B] wanted to give a [OBJECT] to [A]",
    "Then, [B] and [A] had a long argument, and afterwards [B] said to [A]",
    "After [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to [A]",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give it to [A]",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give the [OBJECT] to [A]",
    "While [B] and [A] were working at the [PLACE], [B] gave a [OBJECT] to [A]",
    "While [B] and [A] were commuting to the [PLACE], [B] gave a [OBJECT] to [A]",
    "After the lunch, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Afterwards, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [B] and [A] had a long argument. Afterwards [B] said to [A]",
    "The [PLACE] [B] and [A] went to had a [OBJECT]. [B] gave it to [A]",
    "Friends [B] and [A] found a [OBJECT] at the [PLACE]. [B] gave it to [A]",
    "Once [B] and [A] arrived at the [PLACE], [B] handed the [OBJECT] to [A]",
]

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

# Day-of-week successor prompts: the answer is the day after [DAY].
DAY_TEMPLATES = [
    "Today it is [DAY] so tomorrow it is",
    "Yesterday it was [DAY] so today it is",
]
