"""Name pools for synthetic people and staff: a mix of the names common among London's communities.
Pools, not people: every generated name is a random combination."""

from __future__ import annotations

GIVEN_FEMALE = (
    "Olivia", "Amelia", "Isla", "Ava", "Mia", "Sophia", "Grace", "Lily", "Freya", "Emily", "Aisha", "Fatima",
    "Maryam", "Zara", "Priya", "Ananya", "Chloe", "Hannah", "Sarah", "Jessica", "Amara", "Chioma", "Ngozi",
    "Abena", "Yasmin", "Leila", "Sofia", "Maria", "Anna", "Zofia", "Mei", "Xin", "Nadia", "Eleni", "Ayesha",
    "Khadija", "Precious", "Bethany", "Rachel", "Deborah", "Margaret", "Patricia", "Joan", "Shanice", "Keisha",
)
GIVEN_MALE = (
    "Oliver", "George", "Noah", "Arthur", "Muhammad", "Leo", "Harry", "Oscar", "Jack", "Charlie", "Jacob",
    "Thomas", "James", "William", "Daniel", "Adam", "Yusuf", "Ibrahim", "Omar", "Ali", "Arjun", "Rohan",
    "Aarav", "Kwame", "Kofi", "Chinedu", "Emeka", "Tunde", "Jamal", "Tyrone", "Marcus", "Mateusz", "Jakub",
    "Luca", "Marco", "Andrei", "Wei", "Jun", "Hassan", "Bilal", "David", "Michael", "Peter", "John", "Dennis",
)
FAMILY = (
    "Smith", "Jones", "Williams", "Brown", "Taylor", "Davies", "Evans", "Wilson", "Thomas", "Johnson", "Roberts",
    "Robinson", "Thompson", "Wright", "Walker", "White", "Edwards", "Hughes", "Green", "Hall", "Lewis", "Harris",
    "Clarke", "Patel", "Shah", "Khan", "Ahmed", "Hussain", "Ali", "Begum", "Rahman", "Islam", "Singh", "Kaur",
    "Sharma", "Gupta", "Okafor", "Adeyemi", "Mensah", "Owusu", "Boateng", "Okonkwo", "Nwosu", "Campbell",
    "Francis", "Grant", "Kowalski", "Nowak", "Wisniewski", "Rossi", "Popescu", "Chen", "Wang", "Li", "Nguyen",
    "Papadopoulos", "Yilmaz", "Kaya", "Murphy", "O'Brien", "Kelly", "Byrne", "Mohamed", "Abdi", "Ibrahim",
)
